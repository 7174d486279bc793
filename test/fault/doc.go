// Package fault is Slipway's fault suite: tests that run the real server
// binary (with its own buildkitd, runc and router) and make life hard for
// it — deployments made back to back under constant load, the control
// plane killed with SIGKILL in the middle of deployments, apps that try to
// break out of their sandbox — plus fuzz targets for what the API reads.
//
// The tests need root, runc, buildkitd, ip and the offline base images
// (scripts/setup.sh installs them); the kubernetes crash test also needs
// the cluster's binaries (scripts/install-kubernetes.sh). With the environment variable CI set,
// a missing part fails the tests; without it, they skip and say why.
// fuzz.sh runs every fuzz target of the repository for a bounded time.
//
// The package holds no code of its own besides this comment: the tests are
// in *_test.go, the server harness in serverproc, the test app in
// testdata/faultapp.
package fault
