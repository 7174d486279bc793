package plan

import (
	"path"
	"strings"
)

// staticProvider plans static sites: an index.html at the project root or
// in a build output directory, served by Python's http.server.
//
// Why that server: every Python image has it (the official ones and the
// offline stand-in), so static sites need no image of their own and no
// download; it serves files with their content types, concurrently
// (ThreadingHTTPServer), and binds $PORT. busybox httpd would be smaller
// but is in neither Debian slim nor the Python images. It has no caching
// headers, compression or SPA fallback: a site that needs them brings a
// Dockerfile.
type staticProvider struct{}

// staticDirs are where index.html is looked for, in order.
var staticDirs = []string{".", "dist", "build", "public"}

func (staticProvider) lookedFor() string {
	return "a static site (index.html in " + strings.Join(staticDirs, ", ") + ")"
}

func (staticProvider) detect(t *tree) (bool, error) {
	_, ok := staticDir(t)
	return ok, nil
}

func staticDir(t *tree) (string, bool) {
	for _, d := range staticDirs {
		if t.isFile(path.Join(d, "index.html")) {
			return d, true
		}
	}
	return "", false
}

func (staticProvider) plan(t *tree, p *Plan) error {
	dir, _ := staticDir(t)
	index := path.Join(dir, "index.html")
	img := PythonImage(joinParts(pythonDefault))
	p.Provider = ProviderStatic
	p.WorkDir = WorkDir
	p.BaseImages = BaseImages{Build: img, Runtime: img}
	p.Facts.Language = &Fact{Value: "html", File: index, Reason: index + " is present and no other provider matched"}
	p.Facts.EntryPoint = &Fact{Value: index, File: index, Reason: "the site's index page"}
	input, serve, why := ".", WorkDir, "index.html is at the project root: the whole tree is the site"
	if dir != "." {
		input, serve = dir+"/", WorkDir+"/"+dir
		why = dir + "/index.html is present: " + dir + "/ is the site (and only it is copied)"
	}
	p.Facts.OutputDir = &Fact{Value: dir, File: index, Reason: why}
	p.Steps = []Step{{Name: "copy site", Inputs: []string{input}}}
	p.Env = map[string]string{"PORT": Port, "PYTHONUNBUFFERED": "1"}
	p.DetectedStartCommand = "python3 -m http.server $PORT --bind 0.0.0.0 --directory " + serve
	return nil
}
