package source_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/slipwayhq/slipway/internal/source"
)

func Example() {
	src, _ := os.MkdirTemp("", "src")
	defer os.RemoveAll(src)
	os.WriteFile(filepath.Join(src, ".gitignore"), []byte("*.log\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n"), 0o644)
	os.WriteFile(filepath.Join(src, "debug.log"), []byte("noise\n"), 0o644)

	// The CLI packs…
	var upload bytes.Buffer
	if err := source.Pack(src, &upload); err != nil {
		fmt.Println(err)
		return
	}

	// …and the server unpacks into a fresh directory.
	work, _ := os.MkdirTemp("", "work")
	defer os.RemoveAll(work)
	st, err := source.Extract(&upload, filepath.Join(work, "src"), source.Limits{})
	if err != nil {
		fmt.Println(err) // e.g. upload rejected: "../x" escapes the source directory
		return
	}
	fmt.Printf("%d files, %d bytes\n", st.Files, st.Bytes)
	// Output: 2 files, 19 bytes
}
