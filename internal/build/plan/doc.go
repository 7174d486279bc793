// Package plan detects how to build a source tree and describes it as a
// build plan: data that can be printed (slipway plan DIR), stored with a
// deployment and then executed.
//
// # Detection
//
// Detect (or DetectFS) runs an ordered list of providers against the
// project root (Options.Root, a subdirectory for monorepos) and the first
// one whose Detect matches makes the plan. When no root is set and no
// provider recognises the root of the tree, the project root is detected:
// the directories below (3 levels deep, skipping dependencies, tests and
// hidden directories) are asked, and the only one recognised becomes the
// root, with the reason in Facts.ProjectRoot; several are an
// *AmbiguousRootError listing them (see root.go). Order matters and is
// fixed:
//
//  1. dockerfile — a Dockerfile (or Options.DockerfilePath) is used as is;
//  2. python — pyproject.toml, requirements.txt, uv.lock, poetry.lock,
//     setup.py, manage.py, .python-version or runtime.txt;
//  3. node — package.json;
//  4. go — go.mod;
//  5. static — index.html at the root or in dist/, build/ or public/.
//
// Every plan records the facts it rests on and why (Facts): the language
// version and the file it came from, the package manager and the lock file
// that chose it, the framework and the dependency that revealed it, the
// entry point and the file and line that define it, and the project root.
// Nothing detected is a *NotDetectedError listing what was looked for; a
// manifest that does not parse, or a missing entry point, is an *Error
// naming the file and line. These and *AmbiguousRootError are the user's
// to fix (IsUserError); any other error is an I/O failure.
//
// # Execution: a generated Dockerfile
//
// Plan.Dockerfile renders a plan into a Dockerfile for BuildKit's built-in
// dockerfile.v0 frontend. We generate a Dockerfile rather than LLB because:
// the build pipeline already builds Dockerfiles (build.Builder takes a
// context and a Dockerfile path), so a plan needs no second execution path;
// the frontend gives us, for free, what an LLB backend would have to
// re-implement (image config, ENV/WORKDIR semantics, COPY with
// .dockerignore, cache-key computation, per-step progress names for the
// build log); and the result is a text a user can read, diff and, if
// detection is wrong, copy into the repository as a Dockerfile of their own.
//
// The generated text has no "# syntax=" directive: that would make BuildKit
// pull a frontend image, which an offline host cannot do. It uses only what
// the frontend built into buildkitd v0.26 understands, including
// RUN --mount=type=cache for the package managers' download caches (pip, uv,
// poetry, npm, pnpm, yarn, the Go module and build caches). Cache ids are
// fixed ("slipway-pip", …); the builder puts every cache mount of a build
// in its project's namespace (build.Request.CacheNamespace), so a project
// shares its caches only with itself and another project's Dockerfile
// can't fill them with what this project's build would then run. Steps copy only their inputs before running (the lock files
// before the install, the whole tree before the build), so an unchanged
// lock file keeps the install layer cached; the Dockerfile of a plan is a
// pure function of the plan, so an unchanged source rebuilds from cache.
//
// The build context is always the project root (Plan.Root inside the source
// tree); paths in a plan are relative to it.
package plan
