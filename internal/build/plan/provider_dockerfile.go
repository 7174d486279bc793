package plan

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// dockerfileProvider uses the project's own Dockerfile as is.
type dockerfileProvider struct{}

func (dockerfileProvider) lookedFor() string { return "a Dockerfile" }

func (dockerfileProvider) detect(t *tree) (bool, error) {
	if t.opts.DockerfilePath != "" {
		name, err := cleanDockerfilePath(t.opts.DockerfilePath)
		if err != nil {
			return false, err
		}
		if !t.isFile(name) {
			return false, t.errorf(name, 0, 0, "the Dockerfile set for the project does not exist")
		}
		return true, nil
	}
	return t.isFile("Dockerfile"), nil
}

func cleanDockerfilePath(p string) (string, error) {
	c := path.Clean(strings.TrimLeft(strings.ReplaceAll(p, `\`, "/"), "/"))
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", &Error{Message: fmt.Sprintf("dockerfile path %q is not a file inside the project root", p)}
	}
	return c, nil
}

func (dockerfileProvider) plan(t *tree, p *Plan) error {
	name, why := "Dockerfile", "found at the project root"
	if t.opts.DockerfilePath != "" {
		var err error
		if name, err = cleanDockerfilePath(t.opts.DockerfilePath); err != nil {
			return err
		}
		why = "set by the project's dockerfile path setting"
	}
	data, err := t.read(name)
	if err != nil {
		return err
	}
	df, err := parseDockerfile(data)
	if err != nil {
		return withFile(err, t.rel(name))
	}
	p.Provider = ProviderDockerfile
	p.DockerfilePath = name
	p.BaseImages.Dockerfile = df.images
	p.Facts.Dockerfile = &Fact{Value: name, File: name, Reason: why}
	if df.cmd != "" {
		p.Facts.EntryPoint = &Fact{Value: df.cmd, File: name, Line: df.cmdLine,
			Reason: "the last stage's " + df.cmdKind + "; the image starts with it unless a start command is set"}
	}
	return nil
}

// dockerfileInfo is what a plan records about a Dockerfile.
type dockerfileInfo struct {
	images  []string // external images of FROM lines, in order, deduplicated
	cmd     string   // the last stage's ENTRYPOINT and CMD, as written
	cmdKind string   // "CMD", "ENTRYPOINT" or "ENTRYPOINT and CMD"
	cmdLine int
}

// parseDockerfile parses a Dockerfile with BuildKit's own parser, the one
// its frontend uses. Errors are *Error with the line (File unset).
func parseDockerfile(data []byte) (*dockerfileInfo, error) {
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		e := &Error{Message: "invalid Dockerfile: " + err.Error()}
		var le *parser.LocationError
		if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
			e.Line = le.Locations[0][0].Start.Line
			e.Message = "invalid Dockerfile: " + le.Unwrap().Error()
		}
		return nil, e
	}
	info := &dockerfileInfo{}
	stages := map[string]bool{}
	seen := map[string]bool{}
	var entry, cmd string
	var entryLine, cmdLine int
	froms := 0
	for _, n := range res.AST.Children {
		switch strings.ToLower(n.Value) {
		case "from":
			froms++
			entry, cmd, entryLine, cmdLine = "", "", 0, 0
			if n.Next == nil {
				return nil, &Error{Line: n.StartLine, Message: "invalid Dockerfile: FROM without an image"}
			}
			img := n.Next.Value
			if nn := n.Next.Next; nn != nil && strings.EqualFold(nn.Value, "as") && nn.Next != nil {
				stages[strings.ToLower(nn.Next.Value)] = true
			}
			if strings.EqualFold(img, "scratch") || stages[strings.ToLower(img)] || seen[img] {
				continue
			}
			seen[img] = true
			info.images = append(info.images, img)
		case "cmd":
			cmd, cmdLine = nodeText(n), n.StartLine
		case "entrypoint":
			entry, entryLine = nodeText(n), n.StartLine
		}
	}
	if froms == 0 {
		return nil, &Error{Line: 1, Message: "invalid Dockerfile: no FROM instruction"}
	}
	switch {
	case entry != "" && cmd != "":
		info.cmd, info.cmdKind, info.cmdLine = entry+" "+cmd, "ENTRYPOINT and CMD", entryLine
	case entry != "":
		info.cmd, info.cmdKind, info.cmdLine = entry, "ENTRYPOINT", entryLine
	case cmd != "":
		info.cmd, info.cmdKind, info.cmdLine = cmd, "CMD", cmdLine
	}
	return info, nil
}

// nodeText is an instruction's arguments as written: a JSON array for the
// exec form, the command line for the shell form.
func nodeText(n *parser.Node) string {
	var args []string
	for a := n.Next; a != nil; a = a.Next {
		args = append(args, a.Value)
	}
	if n.Attributes["json"] {
		return jsonArray(args...)
	}
	return strings.Join(args, " ")
}

// withFile sets the file of an *Error that has none.
func withFile(err error, file string) error {
	var e *Error
	if errors.As(err, &e) && e.File == "" {
		e.File = file
	}
	return err
}
