package api

import "encoding/json"

// Detected is what detection found for a deployment and why, read from
// the build plan stored with it when it left INITIALIZING (so it is there
// for every deployment built since, whatever the build log keeps).
type Detected struct {
	// Provider made the plan: dockerfile, python, node, go or static.
	Provider string `json:"provider"`
	// Root is the project root the build ran in ("." for the whole tree);
	// ProjectRoot says why (set by the rootDirectory setting, or detected).
	Root            string `json:"root"`
	ProjectRoot     *Fact  `json:"projectRoot,omitempty"`
	Language        *Fact  `json:"language,omitempty"`
	LanguageVersion *Fact  `json:"languageVersion,omitempty"`
	PackageManager  *Fact  `json:"packageManager,omitempty"`
	Framework       *Fact  `json:"framework,omitempty"`
	EntryPoint      *Fact  `json:"entryPoint,omitempty"`
	OutputDir       *Fact  `json:"outputDir,omitempty"`
	Dockerfile      *Fact  `json:"dockerfile,omitempty"`
	// StartCommand is the start command detection chose ("" when the
	// image's own applies); the deployment's startCommand is the one used.
	StartCommand string   `json:"startCommand"`
	Warnings     []string `json:"warnings,omitempty"`
}

// Fact is one detected fact: its value, the file (and line) it was found
// in, relative to the source tree, and why.
type Fact struct {
	Value  string `json:"value"`
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Reason string `json:"reason"`
}

// DetectedOf reads the detected facts from a stored build plan (the plan's
// JSON document, whose field names are stable), or nil when there is none
// yet.
func DetectedOf(plan string) *Detected {
	if plan == "" {
		return nil
	}
	var p struct {
		Provider             string `json:"provider"`
		Root                 string `json:"root"`
		DetectedStartCommand string `json:"detectedStartCommand"`
		Facts                struct {
			ProjectRoot     *Fact `json:"projectRoot"`
			Language        *Fact `json:"language"`
			LanguageVersion *Fact `json:"languageVersion"`
			PackageManager  *Fact `json:"packageManager"`
			Framework       *Fact `json:"framework"`
			EntryPoint      *Fact `json:"entryPoint"`
			OutputDir       *Fact `json:"outputDir"`
			Dockerfile      *Fact `json:"dockerfile"`
		} `json:"facts"`
		Warnings []string `json:"warnings"`
	}
	if json.Unmarshal([]byte(plan), &p) != nil || p.Provider == "" {
		return nil
	}
	f := p.Facts
	return &Detected{
		Provider: p.Provider, Root: p.Root, ProjectRoot: f.ProjectRoot,
		Language: f.Language, LanguageVersion: f.LanguageVersion, PackageManager: f.PackageManager,
		Framework: f.Framework, EntryPoint: f.EntryPoint, OutputDir: f.OutputDir, Dockerfile: f.Dockerfile,
		StartCommand: p.DetectedStartCommand, Warnings: p.Warnings,
	}
}
