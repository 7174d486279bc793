package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// nodeProvider plans Node apps installed with npm, pnpm or yarn.
type nodeProvider struct{}

// Node major versions plans may pick from a constraint, oldest first, and
// the default.
var (
	nodeLines   = [][]int{{18}, {20}, {22}, {24}}
	nodeDefault = []int{24}
)

// NodeImage is the official image plans use for Node major version v
// ("20"): the slim variant, pinned to Debian bookworm.
func NodeImage(v string) string { return "node:" + v + "-bookworm-slim" }

// nodeLTS maps the codenames .nvmrc may name ("lts/iron") to majors.
var nodeLTS = map[string]int{"hydrogen": 18, "iron": 20, "jod": 22, "krypton": 24}

var (
	cacheNpm       = Cache{ID: "slipway-npm", Target: "/root/.npm"}
	cachePnpm      = Cache{ID: "slipway-pnpm", Target: "/root/.local/share/pnpm/store"}
	cacheYarn      = Cache{ID: "slipway-yarn", Target: "/root/.cache/yarn", Sharing: "locked"}
	cacheYarnBerry = Cache{ID: "slipway-yarn-berry", Target: "/root/.yarn/berry/cache", Sharing: "locked"}
)

// packageJSON is what plans use of a package.json.
type packageJSON struct {
	Name            string            `json:"name"`
	Main            string            `json:"main"`
	Scripts         map[string]string `json:"scripts"`
	Dependencies    map[string]string `json:"dependencies"`
	DevDependencies map[string]string `json:"devDependencies"`
	Engines         map[string]any    `json:"engines"`
	PackageManager  string            `json:"packageManager"`
	Workspaces      json.RawMessage   `json:"workspaces"`

	data []byte
}

// parsePackageJSON parses a package.json. Errors are *Error with the line
// and column (File unset).
func parsePackageJSON(data []byte) (*packageJSON, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var pj packageJSON
	if err := json.Unmarshal(data, &pj); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			line, col := position(data, se.Offset)
			return nil, &Error{Line: line, Column: col, Message: "invalid JSON: " + se.Error()}
		case errors.As(err, &te):
			line, col := position(data, te.Offset)
			field := te.Field
			if field == "" {
				field = "the document"
			}
			return nil, &Error{Line: line, Column: col, Message: fmt.Sprintf("%s must be a %s, not a %s", field, jsonKind(te.Type.Kind().String()), te.Value)}
		default:
			return nil, &Error{Line: 1, Message: "invalid JSON: " + err.Error()}
		}
	}
	pj.data = data
	return &pj, nil
}

func jsonKind(k string) string {
	switch k {
	case "map", "struct":
		return "object"
	case "slice":
		return "array"
	}
	return k
}

// position turns a byte offset (as encoding/json reports it: just past the
// offending byte) into a line and column, from 1.
func position(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off > 0 {
		off--
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// nodeManager is how one package manager installs and runs things.
type nodeManager struct {
	name    string   // npm, pnpm, yarn, yarn-berry
	setup   []string // commands that make the tool available
	install string
	run     string // prefix of "run <script>"
	exec    string // prefix to run a dependency's binary ("" when on PATH)
	caches  []Cache
	env     map[string]string
}

func (nodeProvider) lookedFor() string { return "a Node project (package.json)" }

func (nodeProvider) detect(t *tree) (bool, error) { return t.isFile("package.json"), nil }

func (nodeProvider) plan(t *tree, p *Plan) error {
	b, err := t.read("package.json")
	if err != nil {
		return err
	}
	pj, err := parsePackageJSON(b)
	if err != nil {
		return withFile(err, t.rel("package.json"))
	}
	p.Provider = ProviderNode
	p.WorkDir = WorkDir
	p.Facts.Language = &Fact{Value: "node", File: "package.json", Reason: "package.json is present"}

	ver, err := nodeVersion(t, p, pj)
	if err != nil {
		return err
	}
	p.Facts.LanguageVersion = ver
	img := NodeImage(ver.Value)
	p.BaseImages = BaseImages{Build: img, Runtime: img}

	pm, lock, err := nodePackageManager(t, p, pj)
	if err != nil {
		return err
	}
	p.BuildEnv = map[string]string{"NPM_CONFIG_UPDATE_NOTIFIER": "false", "NPM_CONFIG_FUND": "false"}
	for k, v := range pm.env {
		p.BuildEnv[k] = v
	}
	p.Env = map[string]string{"PORT": Port, "NODE_ENV": "production", "PATH": WorkDir + "/node_modules/.bin:$PATH"}

	// Install from the manifests alone, so that the layer stays cached
	// while only the code changes; the whole tree when the install needs
	// more (workspaces, lifecycle scripts that run project files).
	inputs := []string{"package.json"}
	if lock != "" {
		inputs = append(inputs, lock)
	}
	for _, f := range []string{".npmrc", "pnpm-workspace.yaml", ".pnpmfile.cjs", ".yarnrc", ".yarnrc.yml"} {
		if t.isFile(f) {
			inputs = append(inputs, f)
		}
	}
	for _, d := range []string{".yarn/releases", ".yarn/plugins", ".yarn/patches", "patches"} {
		if t.isDir(d) {
			inputs = append(inputs, d+"/")
		}
	}
	whole := ""
	switch {
	case len(pj.Workspaces) > 0 && string(pj.Workspaces) != "null":
		whole = "package.json declares workspaces"
	case t.isFile("pnpm-workspace.yaml"):
		whole = "pnpm-workspace.yaml declares workspaces"
	default:
		for _, s := range []string{"preinstall", "install", "postinstall", "prepare"} {
			if _, ok := pj.Scripts[s]; ok {
				whole = "the " + s + " script may need the project's files"
				break
			}
		}
	}
	if whole != "" {
		inputs = []string{"."}
	}
	p.Steps = append(p.Steps, Step{
		Name:     "install dependencies",
		Inputs:   inputs,
		Commands: append(append([]string(nil), pm.setup...), pm.install),
		Caches:   pm.caches,
	})
	if _, ok := pj.Scripts["build"]; ok {
		p.Steps = append(p.Steps, Step{Name: "build", Inputs: []string{"."}, Commands: []string{pm.run + " build"}})
	} else {
		p.Steps = append(p.Steps, Step{Name: "copy app", Inputs: []string{"."}})
	}

	fw := nodeFramework(pj)
	if fw != nil {
		p.Facts.Framework = fw.fact
	}
	return nodeStart(t, p, pj, pm, fw)
}

// nodeVersion picks the Node major: .nvmrc, .node-version, engines.node,
// else the default.
func nodeVersion(t *tree, p *Plan, pj *packageJSON) (*Fact, error) {
	def := joinParts(nodeDefault)
	for _, f := range []string{".nvmrc", ".node-version"} {
		b, ok, err := t.readIf(f)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		line, n := firstLine(b)
		v := strings.TrimPrefix(strings.ToLower(line), "v")
		fact := &Fact{File: f, Line: n}
		switch {
		case v == "lts/*" || v == "lts":
			fact.Value, fact.Reason = def, fmt.Sprintf("%s asks for the current LTS; %s, the default", f, def)
		case strings.HasPrefix(v, "lts/") && nodeLTS[strings.TrimPrefix(v, "lts/")] != 0:
			fact.Value = strconv.Itoa(nodeLTS[strings.TrimPrefix(v, "lts/")])
			fact.Reason = fmt.Sprintf("%s asks for %s", f, line)
		case v == "node" || v == "stable" || v == "latest" || v == "current":
			fact.Value = joinParts(nodeLines[len(nodeLines)-1])
			fact.Reason = fmt.Sprintf("%s asks for the newest release; %s is the newest line plans use", f, fact.Value)
		default:
			parts, _ := parseParts(v)
			if len(parts) == 0 || !isDigits(strings.SplitN(v, ".", 2)[0]) {
				p.Warnings = append(p.Warnings, fmt.Sprintf("%s: %q is not a Node version; ignored", f, line))
				continue
			}
			fact.Value, fact.Reason = strconv.Itoa(parts[0]), fmt.Sprintf("%s asks for %s", f, line)
		}
		return fact, nil
	}
	if spec, _ := pj.Engines["node"].(string); strings.TrimSpace(spec) != "" {
		f := &Fact{File: "package.json", Line: lineOf(pj.data, `"node"`)}
		line, ok := pickLine(spec, styleNode, nodeLines, nodeDefault)
		switch {
		case !ok:
			p.Warnings = append(p.Warnings, fmt.Sprintf("package.json: engines.node %q admits none of the Node versions plans support (%s); using %s", spec, lineList(nodeLines), def))
			f.Value, f.Reason = def, fmt.Sprintf("engines.node %q admits no supported version; the default", spec)
		case joinParts(line) == def:
			f.Value, f.Reason = def, fmt.Sprintf("engines.node %q admits %s, the default", spec, def)
		default:
			f.Value = joinParts(line)
			f.Reason = fmt.Sprintf("engines.node %q excludes the default %s; %s is the newest version it admits", spec, def, f.Value)
		}
		return f, nil
	}
	return &Fact{Value: def, Reason: "no .nvmrc, .node-version or engines.node; the default"}, nil
}

// semverWord is a version safe to put in a command line.
var semverWord = regexp.MustCompile(`^[0-9]+(\.[0-9A-Za-z-]+){0,2}$`)

var pnpmLockVersion = regexp.MustCompile(`(?m)^lockfileVersion:\s*['"]?(\d+)`)

// nodePackageManager picks the package manager from the lock file (or the
// packageManager field when there is none) and returns the lock file.
func nodePackageManager(t *tree, p *Plan, pj *packageJSON) (pm nodeManager, lock string, err error) {
	declared, declaredVer, _ := strings.Cut(pj.PackageManager, "@")
	declaredVer, _, _ = strings.Cut(declaredVer, "+") // drop the hash
	name := ""
	switch {
	case t.isFile("pnpm-lock.yaml"):
		name, lock = "pnpm", "pnpm-lock.yaml"
	case t.isFile("yarn.lock"):
		name, lock = "yarn", "yarn.lock"
	case t.isFile("package-lock.json"):
		name, lock = "npm", "package-lock.json"
	case t.isFile("npm-shrinkwrap.json"):
		name, lock = "npm", "npm-shrinkwrap.json"
	}
	if lock != "" {
		p.Facts.PackageManager = &Fact{Value: name, File: lock, Reason: lock + " is present"}
	} else if declared == "npm" || declared == "pnpm" || declared == "yarn" {
		name = declared
		p.Facts.PackageManager = &Fact{Value: name, File: "package.json", Line: lineOf(pj.data, `"packageManager"`),
			Reason: "no lock file; package.json's packageManager names " + pj.PackageManager}
	} else {
		name = "npm"
		why := "no lock file and no packageManager field: npm, the default"
		if f, ok := t.anyFile("bun.lockb", "bun.lock"); ok {
			why = f + " is present but plans do not support bun; npm installs from package.json"
		}
		p.Facts.PackageManager = &Fact{Value: name, Reason: why}
	}
	if lock == "" {
		p.Warnings = append(p.Warnings, "no lock file: commit one so that builds install the versions you tested")
	}

	switch name {
	case "npm":
		pm = nodeManager{name: "npm", install: "npm install", run: "npm run", caches: []Cache{cacheNpm}}
		if lock != "" {
			pm.install = "npm ci"
		}
	case "pnpm":
		ver := "9"
		if declared == "pnpm" && semverWord.MatchString(declaredVer) {
			ver = declaredVer
		} else if lock != "" {
			if b, ok, err := t.readIf(lock); err == nil && ok {
				if m := pnpmLockVersion.FindSubmatch(b); m != nil {
					switch string(m[1]) {
					case "5":
						ver = "7"
					case "6":
						ver = "8"
					}
				}
			}
		}
		pm = nodeManager{name: "pnpm", run: "pnpm run", caches: []Cache{cacheNpm, cachePnpm},
			setup:   []string{"command -v pnpm >/dev/null 2>&1 || npm install -g pnpm@" + ver},
			install: "pnpm install --store-dir " + cachePnpm.Target}
		if lock != "" {
			pm.install = "pnpm install --frozen-lockfile --store-dir " + cachePnpm.Target
		}
	case "yarn":
		berry := t.isFile(".yarnrc.yml") || (declared == "yarn" && !strings.HasPrefix(declaredVer, "1."))
		if lock != "" {
			if b, ok, err := t.readIf(lock); err == nil && ok && bytes.Contains(b, []byte("\n__metadata:")) {
				berry = true
			}
		}
		if !berry {
			pm = nodeManager{name: "yarn", run: "yarn run", caches: []Cache{cacheNpm, cacheYarn},
				setup:   []string{"command -v yarn >/dev/null 2>&1 || npm install -g yarn@1"},
				install: "yarn install --frozen-lockfile",
				env:     map[string]string{"YARN_CACHE_FOLDER": cacheYarn.Target}}
			if lock == "" {
				pm.install = "yarn install"
			}
			break
		}
		p.Facts.PackageManager.Value = "yarn-berry"
		p.Facts.PackageManager.Reason += "; Yarn 2 or later (" + berryWhy(t, lock) + ")"
		pm = nodeManager{name: "yarn-berry", run: "yarn run", exec: "yarn ", caches: []Cache{cacheYarnBerry},
			setup:   []string{"corepack enable"},
			install: "yarn install --immutable",
			env:     map[string]string{"YARN_ENABLE_GLOBAL_CACHE": "true", "YARN_GLOBAL_FOLDER": "/root/.yarn/berry"}}
		if yrc, ok, _ := t.readIf(".yarnrc.yml"); ok && bytes.Contains(yrc, []byte("yarnPath:")) {
			// The release checked in under .yarn/releases runs the install;
			// the classic yarn only starts it.
			pm.setup = []string{"command -v yarn >/dev/null 2>&1 || npm install -g yarn@1"}
			pm.caches = append([]Cache{cacheNpm}, pm.caches...)
		}
		if lock == "" {
			pm.install = "yarn install"
		}
	}
	return pm, lock, nil
}

func berryWhy(t *tree, lock string) string {
	if t.isFile(".yarnrc.yml") {
		return ".yarnrc.yml is present"
	}
	if lock != "" {
		return lock + " has a __metadata section"
	}
	return "packageManager names it"
}

// nodeFrameworkInfo is a framework and how it starts without a start
// script.
type nodeFrameworkInfo struct {
	fact  *Fact
	start string // "" when the framework has no default server
	env   map[string]string
}

// nodeFrameworks in the order they are looked for: meta-frameworks before
// the libraries they build on.
var nodeFrameworks = []struct {
	pkg, name, start string
	env              map[string]string
}{
	{"next", "next", "next start --hostname 0.0.0.0 --port $PORT", nil},
	{"nuxt", "nuxt", "node .output/server/index.mjs", map[string]string{"HOST": "0.0.0.0"}},
	{"@remix-run/serve", "remix", "remix-serve ./build/server/index.js", nil},
	{"@sveltejs/kit", "sveltekit", "node build", map[string]string{"HOST": "0.0.0.0"}},
	{"astro", "astro", "node ./dist/server/entry.mjs", map[string]string{"HOST": "0.0.0.0"}},
	{"@nestjs/core", "nest", "node dist/main", nil},
	{"vite", "vite", "vite preview --host 0.0.0.0 --port $PORT", nil},
	{"express", "express", "", nil},
	{"fastify", "fastify", "", nil},
	{"koa", "koa", "", nil},
	{"hono", "hono", "", nil},
}

func nodeFramework(pj *packageJSON) *nodeFrameworkInfo {
	for _, f := range nodeFrameworks {
		field := "dependencies"
		_, ok := pj.Dependencies[f.pkg]
		if !ok {
			field = "devDependencies"
			_, ok = pj.DevDependencies[f.pkg]
		}
		if ok {
			return &nodeFrameworkInfo{
				fact: &Fact{Value: f.name, File: "package.json", Line: lineOf(pj.data, strconv.Quote(f.pkg)+":"),
					Reason: fmt.Sprintf("%s is in package.json's %s", f.pkg, field)},
				start: f.start, env: f.env,
			}
		}
	}
	return nil
}

// nodeStart picks the start command: the start script, the framework's
// server, the main field, or a conventional file.
func nodeStart(t *tree, p *Plan, pj *packageJSON, pm nodeManager, fw *nodeFrameworkInfo) error {
	if s, ok := pj.Scripts["start"]; ok && strings.TrimSpace(s) != "" {
		p.Facts.EntryPoint = &Fact{Value: s, File: "package.json", Line: lineOf(pj.data, `"start"`), Reason: "package.json's start script"}
		p.DetectedStartCommand = pm.run + " start"
		if pm.name == "npm" {
			p.DetectedStartCommand = "npm start"
		}
		return nil
	}
	if fw != nil && fw.start != "" {
		p.Facts.EntryPoint = &Fact{Value: fw.start, Reason: "no start script; the default server of " + fw.fact.Value}
		p.DetectedStartCommand = pm.exec + fw.start
		for k, v := range fw.env {
			p.Env[k] = v
		}
		return nil
	}
	if pj.Main != "" {
		main := strings.TrimPrefix(pj.Main, "./")
		for _, f := range []string{main, main + ".js", main + "/index.js"} {
			if t.isFile(f) {
				p.Facts.EntryPoint = &Fact{Value: f, File: "package.json", Line: lineOf(pj.data, `"main"`), Reason: "no start script; package.json's main field"}
				p.DetectedStartCommand = "node " + shellWord(f)
				return nil
			}
		}
	}
	for _, base := range []string{"server", "index", "app", "main"} {
		for _, ext := range []string{".js", ".mjs", ".cjs"} {
			if f := base + ext; t.isFile(f) {
				p.Facts.EntryPoint = &Fact{Value: f, File: f, Reason: "no start script or main field; " + f + " is at the project root"}
				p.DetectedStartCommand = "node " + f
				return nil
			}
		}
	}
	return t.noEntryPoint(p, t.errorf("package.json", 0, 0,
		"no entry point: no start script, no framework with a default server, no main field and no server.js, index.js, app.js or main.js; add a start script or set a start command"))
}
