package oci_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/slipwayhq/slipway/internal/runtime/oci"
)

// An image's command prepared as a driver prepares it, here to run as a
// plain process chrooted into the unpacked image (as the wake benchmark's
// baseline does): the image pulled and unpacked into a directory, its user
// resolved against its own /etc/passwd, its command line and environment
// taken from its config.
func Example() {
	ctx := context.Background()
	img, err := oci.Pull(ctx, "127.0.0.1:5000/app:latest")
	if err != nil {
		log.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		log.Fatal(err)
	}
	rootfs, err := os.MkdirTemp("", "rootfs-")
	if err != nil {
		log.Fatal(err)
	}
	if err := oci.Unpack(ctx, img, rootfs); err != nil {
		log.Fatal(err)
	}
	user, err := oci.ResolveUser(rootfs, cf.Config.User)
	if err != nil {
		log.Fatal(err)
	}
	args, err := oci.Args(nil, cf.Config)
	if err != nil {
		log.Fatal(err)
	}
	env := oci.Env(cf.Config.Env, []string{"MODE=demo"}, 3000, "app", user.Home)
	fmt.Println(user.UID, user.GID, args, env)
}

// A driver gets an image from its cache, mounts the instance's filesystem
// on the unpacked rootfs, and only then releases it, so that Remove cannot
// take the image away in between.
func ExampleCache() {
	images, err := oci.NewCache("/var/lib/slipway/runtime/images")
	if err != nil {
		log.Fatal(err)
	}
	defer images.Wait()
	img, release, err := images.Get(context.Background(), "127.0.0.1:5000/app@sha256:"+
		"0000000000000000000000000000000000000000000000000000000000000000")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("lowerdir=" + img.Rootfs) // mount the instance's overlay here
	release()
}
