package plan

// FormatVersion is the version of the plan's JSON document. It changes
// when a field changes meaning or is removed; new fields may be added
// without changing it.
const FormatVersion = 1

// Providers, as recorded in Plan.Provider.
const (
	ProviderDockerfile = "dockerfile"
	ProviderPython     = "python"
	ProviderNode       = "node"
	ProviderGo         = "go"
	ProviderStatic     = "static"
)

// WorkDir is the directory of the image that holds the project root.
const WorkDir = "/app"

// Port is the port apps listen on; plans set PORT to it.
const Port = "3000"

// Plan is a detected build plan. It is plain data: it marshals to JSON
// with the field names shown, which are stable (see FormatVersion).
type Plan struct {
	// FormatVersion is the plan format's version (FormatVersion).
	FormatVersion int `json:"planVersion"`
	// Provider made the plan: "dockerfile", "python", "node", "go" or
	// "static".
	Provider string `json:"provider"`
	// Root is the project root relative to the source tree, slash-separated;
	// "." for the whole tree. It is the build context, and every path in the
	// plan is relative to it.
	Root string `json:"root"`
	// DockerfilePath is, for provider "dockerfile" only, the Dockerfile to
	// build as is, relative to Root. Such a plan has no steps, and
	// Dockerfile() returns ErrUsesDockerfile.
	DockerfilePath string `json:"dockerfilePath,omitempty"`
	// BaseImages are the images the build starts from.
	BaseImages BaseImages `json:"baseImages"`
	// WorkDir is the directory in the images that holds the project root
	// ("/app"); steps run there and the app starts there. Empty for
	// provider "dockerfile".
	WorkDir string `json:"workdir,omitempty"`
	// BuildEnv is set in the build image before the first step.
	BuildEnv map[string]string `json:"buildEnv,omitempty"`
	// Steps run in order in the build image.
	Steps []Step `json:"steps,omitempty"`
	// Artifacts are the absolute paths copied, each to the same path, from
	// the build image into the runtime image when the two differ. When
	// BaseImages.Build equals BaseImages.Runtime the build image itself is
	// the runtime image and Artifacts is empty.
	Artifacts []string `json:"artifacts,omitempty"`
	// Env is the runtime environment of the app (PORT among it).
	Env map[string]string `json:"env,omitempty"`
	// DetectedStartCommand is the start command detection chose, a shell
	// command line (run by /bin/sh -c, so $PORT expands). Empty for
	// provider "dockerfile": the image's own ENTRYPOINT and CMD apply.
	DetectedStartCommand string `json:"detectedStartCommand"`
	// StartCommand is the command the app starts with: Options.StartCommand
	// when it was set, else DetectedStartCommand.
	StartCommand string `json:"startCommand"`
	// Facts are what detection found, and why.
	Facts Facts `json:"facts"`
	// Warnings are things the user may want to fix; the plan works without.
	Warnings []string `json:"warnings,omitempty"`
}

// BaseImages names the images a plan builds from, as references a registry
// (Docker Hub, or a mirror of it) resolves: "python:3.11-slim-bookworm".
type BaseImages struct {
	// Build is the image the steps run in.
	Build string `json:"build,omitempty"`
	// Runtime is the image the app runs in; equal to Build for single-stage
	// plans.
	Runtime string `json:"runtime,omitempty"`
	// Dockerfile lists, for provider "dockerfile", every image the
	// Dockerfile's FROM lines name (stages and "scratch" left out), in order,
	// as written (build arguments are not expanded).
	Dockerfile []string `json:"dockerfile,omitempty"`
}

// Step is one step of the build: copy its inputs into WorkDir, then run
// its commands with its cache mounts.
type Step struct {
	// Name says what the step does: "install", "build", …
	Name string `json:"name"`
	// Inputs are copied from the build context into WorkDir before the
	// commands run: paths relative to the project root; "." is the whole
	// tree and a trailing "/" marks a directory (copied as that directory).
	Inputs []string `json:"inputs,omitempty"`
	// Commands are shell command lines run in order by /bin/sh in one layer;
	// the step fails at the first that fails.
	Commands []string `json:"commands,omitempty"`
	// Caches are mounted while the commands run and kept between builds;
	// their content never ends up in the image.
	Caches []Cache `json:"caches,omitempty"`
}

// Cache is a cache directory mounted while a step runs
// (RUN --mount=type=cache).
type Cache struct {
	// ID names the cache; steps and builds with the same ID share it.
	ID string `json:"id"`
	// Target is the absolute path it is mounted at.
	Target string `json:"target"`
	// Sharing is how concurrent builds share it: "shared", "locked" (one
	// writer at a time; for tools that do not lock their cache) or
	// "private". If empty, "shared".
	Sharing string `json:"sharing,omitempty"`
}

// Fact is one thing detection found.
type Fact struct {
	// Value is what was found: "3.12", "uv", "fastapi", "app.main:app".
	Value string `json:"value"`
	// File is where it was found, relative to the project root, when it was
	// found in a file.
	File string `json:"file,omitempty"`
	// Line is the line of File, from 1, when known.
	Line int `json:"line,omitempty"`
	// Reason says why, in a sentence for people.
	Reason string `json:"reason"`
}

// Facts are the facts a plan rests on. Each is nil when it does not apply.
type Facts struct {
	// ProjectRoot is the directory detection ran in.
	ProjectRoot *Fact `json:"projectRoot"`
	// Language is "python", "node", "go" or "html".
	Language *Fact `json:"language,omitempty"`
	// LanguageVersion is the version of the language's toolchain (major and
	// minor for Python and Go, major for Node), which picks the base image.
	LanguageVersion *Fact `json:"languageVersion,omitempty"`
	// PackageManager is the tool that installs the dependencies: "uv",
	// "poetry", "pip", "npm", "pnpm", "yarn", "yarn-berry", "go".
	PackageManager *Fact `json:"packageManager,omitempty"`
	// Framework is the web framework: "fastapi", "flask", "django", "next",
	// "express", …
	Framework *Fact `json:"framework,omitempty"`
	// EntryPoint is what the start command starts: "app.main:app",
	// "mysite.wsgi:application", "server.js", "./cmd/api", or the
	// Dockerfile's CMD.
	EntryPoint *Fact `json:"entryPoint,omitempty"`
	// OutputDir is the directory a static site is served from.
	OutputDir *Fact `json:"outputDir,omitempty"`
	// Dockerfile is the Dockerfile a plan of provider "dockerfile" builds.
	Dockerfile *Fact `json:"dockerfile,omitempty"`
}
