// Package ktest starts a real Kubernetes control plane for tests: etcd and
// kube-apiserver on loopback in a temporary directory, and, for tests that
// run pods, a kubelet on Debian's containerd (runc) with a CNI bridge of
// its own. The binaries come from scripts/install-kubernetes.sh.
//
//	c := ktest.Start(t, ktest.Options{Kubelet: true})
//	c.Client  // a clientset with cluster-admin rights
//	c.Node    // the node's name, for pods placed without a scheduler
//
// There is no scheduler and no controller manager: tests place pods with
// nodeName and delete what they make. At the end of the test everything
// is torn down: pods, containers and their shims, the network namespaces,
// mounts and cgroups they had, the bridge, iptables chains the kubelet
// made, and the directory.
//
// A missing binary, or a kubelet asked for without root, skips the test,
// or fails it when CI=true.
package ktest

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options says what to start beside etcd and the API server.
type Options struct {
	// Kubelet starts containerd and a kubelet, so that pods run. Needs
	// root.
	Kubelet bool
}

// Cluster is a running control plane.
type Cluster struct {
	Dir        string // the cluster's temporary directory
	Kubeconfig string // a kubeconfig file with cluster-admin rights
	Config     *rest.Config
	Client     kubernetes.Interface
	// User is the config of the user UserName, who has no rights until
	// a test binds some.
	User *rest.Config
	// Node is the kubelet's node name; empty without a kubelet.
	Node string
	// Subnet is the pods' address range on the cluster's bridge.
	Subnet string

	containerd string // containerd's socket, with a kubelet
	certsDir   string // containerd's registry hosts directory
}

// UserName is Cluster.User's user name.
const UserName = "ktest-user"

// Bridge is the name of the CNI bridge a cluster's pods attach to.
const Bridge = "slwktest0"

// subnet is the pods' range: a private /24 outside the ranges Slipway's
// own instance network picks (10.88–10.254/16, 172.29–31/16).
const subnet = "10.255.77.0/24"

// pauseImage is the pod sandbox image containerd is told to use; the
// cluster builds it (there is no registry to pull the usual one from).
const pauseImage = "slipway.test/pause:1"

// missing skips or, under CI, fails the test.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// repoRoot is the Slipway repository's top directory (this file is in
// internal/runtime/kubernetes/ktest).
func repoRoot() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..")
}

// requireOf reads the version a wrapper module's go.mod requires of mod.
func requireOf(gomod, mod string) string {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "require" && f[1] == mod {
			return f[2]
		}
	}
	return ""
}

// BinDir is where scripts/install-kubernetes.sh puts the binaries:
// $SLIPWAY_KUBE_CACHE, else /var/cache/slipway/kubernetes/<k8s>-<etcd>.
func BinDir() string {
	if d := os.Getenv("SLIPWAY_KUBE_CACHE"); d != "" {
		return d
	}
	root := repoRoot()
	k := requireOf(filepath.Join(root, "tools", "kube", "go.mod"), "k8s.io/kubernetes")
	e := requireOf(filepath.Join(root, "tools", "etcd", "go.mod"), "go.etcd.io/etcd/server/v3")
	return filepath.Join("/var/cache/slipway/kubernetes", k+"-"+e)
}

func binary(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(BinDir(), name)
	if _, err := os.Stat(p); err != nil {
		missing(t, "ktest: %s is missing (run scripts/install-kubernetes.sh): %v", p, err)
	}
	return p
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start starts a cluster for the rest of the test.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	etcdBin, apiBin := binary(t, "etcd"), binary(t, "kube-apiserver")
	var kubeletBin, containerdBin, ctrBin string
	if opts.Kubelet {
		kubeletBin = binary(t, "kubelet")
		if os.Geteuid() != 0 {
			missing(t, "ktest: a kubelet needs root")
		}
		var err error
		if containerdBin, err = exec.LookPath("containerd"); err != nil {
			missing(t, "ktest: containerd is missing (run scripts/install-kubernetes.sh): %v", err)
		}
		if ctrBin, err = exec.LookPath("ctr"); err != nil {
			missing(t, "ktest: ctr is missing (run scripts/install-kubernetes.sh): %v", err)
		}
		for _, p := range []string{"bridge", "host-local", "loopback"} {
			if _, err := os.Stat("/usr/lib/cni/" + p); err != nil {
				missing(t, "ktest: the CNI plugin %s is missing (containernetworking-plugins): %v", p, err)
			}
		}
	}
	// Not t.TempDir: a kubelet's directory is torn down by hand (mounts
	// first), and the path must stay short for sockets.
	dir, err := os.MkdirTemp("", "ktest-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Dir: dir}
	var procs []*proc
	t.Cleanup(func() {
		if c.Node != "" {
			c.teardownNode(t, procs)
		}
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop()
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("ktest: removing %s: %v", dir, err)
		}
	})

	// etcd.
	etcdPort, peerPort := freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	procs = append(procs, startProc(t, dir, "etcd", etcdBin,
		"--data-dir", filepath.Join(dir, "etcd"), "--name", "ktest",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-cluster", fmt.Sprintf("ktest=http://127.0.0.1:%d", peerPort),
		"--unsafe-no-fsync", "--log-level", "warn"))
	waitHTTP(t, procs[len(procs)-1], etcdURL+"/health", nil)

	// kube-apiserver, with one token of cluster-admin rights.
	token, userToken := randomHex(16), randomHex(16)
	write(t, filepath.Join(dir, "tokens.csv"), token+`,ktest-admin,ktest-admin,"system:masters"`+"\n"+
		userToken+","+UserName+","+UserName+"\n")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "sa.key"), string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})))
	apiPort := freePort(t)
	host := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	procs = append(procs, startProc(t, dir, "kube-apiserver", apiBin,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", fmt.Sprint(apiPort),
		"--cert-dir", filepath.Join(dir, "apiserver-certs"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range", "10.255.78.0/24",
		"--endpoint-reconciler-type", "none",
		// No controller manager makes service accounts: pods go without.
		"--disable-admission-plugins", "ServiceAccount",
		"--feature-gates", "PodLogsQuerySplitStreams=true",
		"--kubelet-preferred-address-types", "InternalIP",
		"--enable-priority-and-fairness=false", "--profiling=false"))
	c.Config = &rest.Config{Host: host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS: 100, Burst: 200}
	c.User = rest.CopyConfig(c.Config)
	c.User.BearerToken = userToken
	waitHTTP(t, procs[len(procs)-1], host+"/readyz", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) })
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	write(t, c.Kubeconfig, kubeconfig(host, token))
	if opts.Kubelet {
		procs = c.startNode(t, procs, containerdBin, ctrBin, kubeletBin)
	}
	return c
}

func kubeconfig(host, token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: ktest
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: ktest
  user:
    token: %s
contexts:
- name: ktest
  context:
    cluster: ktest
    user: ktest
current-context: ktest
`, host, token)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func write(t testing.TB, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// proc is a process the cluster started; its output goes to a log file
// that a failing test prints.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(t testing.TB, dir, name, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("ktest: starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ktest: the end of %s's log:\n%s", name, tail(logPath, 40))
		}
	})
	return p
}

// stop ends the process (SIGTERM, then SIGKILL to its process group).
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitHTTP polls url until it answers 200, failing if p exits first or a
// minute passes.
func waitHTTP(t testing.TB, p *proc, url string, edit func(*http.Request)) {
	t.Helper()
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		// The API server's certificate is one it made itself.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	deadline := time.Now().Add(time.Minute)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("ktest: %s exited while starting:\n%s", p.name, tail(p.log, 40))
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if edit != nil {
			edit(req)
		}
		resp, err := cl.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("ktest: %s never answered %s: %s\n%s", p.name, url, last, tail(p.log, 40))
}

// WaitNodeReady waits until the node reports Ready.
func (c *Cluster) waitNodeReady(t testing.TB, kubelet *proc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, c.Node, metav1.GetOptions{})
		if err == nil {
			for _, cond := range n.Status.Conditions {
				if cond.Type == "Ready" && cond.Status == "True" {
					return
				}
			}
		}
		select {
		case <-kubelet.done:
			t.Fatalf("ktest: the kubelet exited:\n%s", tail(kubelet.log, 60))
		case <-ctx.Done():
			t.Fatalf("ktest: node %s never became Ready (%v):\n%s", c.Node, err, tail(kubelet.log, 60))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// lines reads a file's lines (nil if it cannot be read).
func lines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
