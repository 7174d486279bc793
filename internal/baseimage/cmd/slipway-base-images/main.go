// Command slipway-base-images builds the offline stand-ins for the official
// base images into an OCI image layout (see package baseimage):
//
//	slipway-base-images [-cache DIR] [-images debian,golang,python,node,node22,node24] [-ca-certs DIR]
//		[-npm-registry URL] [-force] [OUTDIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/internal/baseimage"
)

func main() {
	var opts baseimage.Options
	var images string
	flag.StringVar(&opts.CacheDir, "cache", os.Getenv("SLIPWAY_BASE_IMAGES_CACHE"), "rootfs and layer cache (SLIPWAY_BASE_IMAGES_CACHE; default /var/cache/slipway/base-images)")
	flag.StringVar(&images, "images", "", "comma-separated images to build (default: "+strings.Join(baseimage.Names(), ",")+")")
	flag.StringVar(&opts.CACerts, "ca-certs", "", "extra CA certificates (*.crt) the images trust (default /usr/local/share/ca-certificates)")
	flag.StringVar(&opts.NpmRegistry, "npm-registry", "", "npm registry of the node22 and node24 images' Node, npm, corepack and yarn (default: the host's npm configuration)")
	flag.BoolVar(&opts.Force, "force", false, "rebuild the images even if the layout holds them")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] [OUTDIR (default /var/lib/slipway/base-images)]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	}
	opts.OutDir = flag.Arg(0)
	if images != "" {
		opts.Images = strings.Split(images, ",")
	}
	opts.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if err := baseimage.Build(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "slipway-base-images:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "base images ready in %s\n", time.Since(start).Round(time.Second))
}
