package kubernetes

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/slipwayhq/slipway/internal/netns"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/kubernetes/ktest"
)

// These tests run against an API server alone (no kubelet, no scheduler):
// pods are created but never run.

func apiCluster(t *testing.T) *ktest.Cluster {
	t.Helper()
	return ktest.Start(t, ktest.Options{})
}

func newDriver(t *testing.T, cfg Config) *Driver {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func testSpec(t *testing.T, id string) runtime.Spec {
	dir := t.TempDir()
	return runtime.Spec{
		ID:         id,
		Image:      "127.0.0.1:7300/shop/web@sha256:" + strings.Repeat("ab", 32),
		Group:      "proj1",
		Env:        []string{"GREETING=hi there", "PORT=1", "SLIPWAY_DEPLOYMENT_ID=dep42", "EMPTY="},
		Limits:     runtime.Limits{MemoryBytes: 256 << 20, CPUMillis: 500, DiskBytes: 128 << 20},
		StdoutPath: filepath.Join(dir, "stdout"), StderrPath: filepath.Join(dir, "stderr"),
	}
}

func TestObjects(t *testing.T) {
	c := apiCluster(t)
	var asked, revoked []string
	d := newDriver(t, Config{REST: c.Config, RegistryHost: "registry.internal:5000", UserNamespaces: true, DenyEgress: netns.Reserved(),
		RuntimeClass: "gvisor",
		PullToken: func(repo string) (string, func(), error) {
			asked = append(asked, repo)
			return "swg_only-" + repo, func() { revoked = append(revoked, repo) }, nil
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := d.create(ctx, testSpec(t, "inst0"))
	if err == nil || !strings.Contains(err.Error(), `RuntimeClass "gvisor" not found`) {
		t.Errorf("create with a RuntimeClass the cluster lacks = %v, want the cluster's refusal", err)
	}
	if len(revoked) != 1 {
		t.Errorf("a create that failed revoked %q, want its one pull credential", revoked)
	}
	asked, revoked = nil, nil
	assertNothingLeft(t, c.Client, "slipway-proj1", "inst0")
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "gvisor"}, Handler: "runsc"}
	if _, err := c.Client.NodeV1().RuntimeClasses().Create(ctx, rc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := d.create(ctx, testSpec(t, "inst1"))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if st.Namespace != "slipway-proj1" || st.Pod != "inst1" || st.UID == "" || st.Port != 3000 {
		t.Errorf("state = %+v", st)
	}
	if len(asked) != 1 || asked[0] != "shop/web" {
		t.Errorf("pull tokens asked for %q, want the one repository shop/web", asked)
	}
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, "slipway-proj1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the project's namespace: %v", err)
	}
	if ns.Labels[LabelProject] != "proj1" || ns.Labels[LabelManagedBy] != "slipway" {
		t.Errorf("namespace labels = %v", ns.Labels)
	}

	// The namespace's egress policy: every IPv4 address but the private
	// and reserved ones, and the cluster's DNS.
	pol, err := c.Client.NetworkingV1().NetworkPolicies("slipway-proj1").Get(ctx, EgressPolicyName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the project's egress policy: %v", err)
	}
	ps0 := pol.Spec
	if ps0.PodSelector.MatchLabels[LabelManagedBy] != "slipway" || len(ps0.PolicyTypes) != 1 || ps0.PolicyTypes[0] != networkingv1.PolicyTypeEgress || len(ps0.Ingress) != 0 {
		t.Errorf("egress policy selects %v, types %v, ingress %v", ps0.PodSelector, ps0.PolicyTypes, ps0.Ingress)
	}
	if len(ps0.Egress) != 2 || len(ps0.Egress[0].To) != 1 || ps0.Egress[0].To[0].IPBlock == nil || len(ps0.Egress[0].Ports) != 0 {
		t.Fatalf("egress rules = %+v", ps0.Egress)
	}
	block := ps0.Egress[0].To[0].IPBlock
	for _, want := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8"} {
		if block.CIDR != "0.0.0.0/0" || !slices.Contains(block.Except, want) {
			t.Errorf("egress allowed to %s except %v, want %s left out", block.CIDR, block.Except, want)
		}
	}
	dnsRule := ps0.Egress[1]
	if len(dnsRule.To) != 1 || dnsRule.To[0].PodSelector == nil || dnsRule.To[0].PodSelector.MatchLabels["k8s-app"] != "kube-dns" ||
		dnsRule.To[0].NamespaceSelector == nil || len(dnsRule.Ports) != 2 || dnsRule.Ports[0].Port.IntValue() != 53 {
		t.Errorf("DNS egress rule = %+v", dnsRule)
	}

	pod, err := c.Client.CoreV1().Pods("slipway-proj1").Get(ctx, "inst1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{LabelInstance: "inst1", LabelDeployment: "dep42", LabelProject: "proj1", LabelManagedBy: "slipway"}
	for k, v := range wantLabels {
		if pod.Labels[k] != v {
			t.Errorf("pod label %s = %q, want %q", k, pod.Labels[k], v)
		}
	}
	ps := pod.Spec
	if ps.RestartPolicy != corev1.RestartPolicyNever || *ps.AutomountServiceAccountToken || *ps.EnableServiceLinks {
		t.Errorf("pod spec: restart %s, service account token %v, service links %v", ps.RestartPolicy, *ps.AutomountServiceAccountToken, *ps.EnableServiceLinks)
	}
	if ps.HostUsers == nil || *ps.HostUsers || ps.RuntimeClassName == nil || *ps.RuntimeClassName != "gvisor" {
		t.Errorf("pod isolation: hostUsers %v, runtime class %v", ps.HostUsers, ps.RuntimeClassName)
	}
	ctr := ps.Containers[0]
	if ctr.Image != "registry.internal:5000/shop/web@sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("image = %q, want the registry host rewritten", ctr.Image)
	}
	if len(ctr.Env) != 1 || ctr.Env[0].Name != "PORT" || ctr.Env[0].Value != "3000" {
		t.Errorf("container env = %v, want PORT=3000 alone", ctr.Env)
	}
	if len(ctr.Ports) != 1 || ctr.Ports[0].ContainerPort != 3000 {
		t.Errorf("ports = %v", ctr.Ports)
	}
	lim := ctr.Resources.Limits
	for name, want := range map[corev1.ResourceName]string{corev1.ResourceMemory: "256Mi", corev1.ResourceCPU: "500m", corev1.ResourceEphemeralStorage: "128Mi"} {
		if q := lim[name]; q.Cmp(resource.MustParse(want)) != 0 {
			t.Errorf("limit %s = %s, want %s", name, q.String(), want)
		}
	}
	sc := ctr.SecurityContext
	if sc == nil || *sc.AllowPrivilegeEscalation || *sc.Privileged || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "NET_RAW" {
		t.Errorf("security context = %+v", sc)
	}

	// The variables, in a secret of the instance.
	if len(ctr.EnvFrom) != 1 || ctr.EnvFrom[0].SecretRef == nil {
		t.Fatalf("envFrom = %+v", ctr.EnvFrom)
	}
	env, err := c.Client.CoreV1().Secrets("slipway-proj1").Get(ctx, ctr.EnvFrom[0].SecretRef.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(env.Data["GREETING"]) != "hi there" || string(env.Data["SLIPWAY_DEPLOYMENT_ID"]) != "dep42" || len(env.Data["EMPTY"]) != 0 {
		t.Errorf("env secret = %v", env.Data)
	}
	if _, ok := env.Data["PORT"]; ok {
		t.Errorf("the env secret holds PORT, which is the driver's")
	}
	if env.Labels[LabelInstance] != "inst1" {
		t.Errorf("env secret labels = %v", env.Labels)
	}

	// The pull secret names the registry as nodes reach it, with the
	// token of the one repository.
	if len(ps.ImagePullSecrets) != 1 {
		t.Fatalf("image pull secrets = %v", ps.ImagePullSecrets)
	}
	pull, err := c.Client.CoreV1().Secrets("slipway-proj1").Get(ctx, ps.ImagePullSecrets[0].Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pull.Type != corev1.SecretTypeDockerConfigJson {
		t.Errorf("pull secret type = %s", pull.Type)
	}
	var dc struct {
		Auths map[string]struct{ Username, Password, Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(pull.Data[corev1.DockerConfigJsonKey], &dc); err != nil {
		t.Fatal(err)
	}
	a, ok := dc.Auths["registry.internal:5000"]
	if !ok || len(dc.Auths) != 1 || a.Password != "swg_only-shop/web" {
		t.Errorf("pull secret auths = %+v", dc.Auths)
	}
	if a.Auth != base64.StdEncoding.EncodeToString([]byte(a.Username+":"+a.Password)) {
		t.Errorf("pull secret auth = %q, want base64 of user:password", a.Auth)
	}

	// Stop removes the pod and both secrets; the namespace stays.
	raw, _ := json.Marshal(st)
	h := &runtime.Handle{ID: "inst1", Driver: Name, State: raw}
	if err := d.Stop(ctx, h); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := d.Inspect(ctx, h); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Inspect after Stop = %v, want ErrNotFound", err)
	}
	left, err := c.Client.CoreV1().Secrets("slipway-proj1").List(ctx, metav1.ListOptions{LabelSelector: LabelInstance + "=inst1"})
	if err != nil || len(left.Items) != 0 {
		t.Errorf("secrets left after Stop: %v %v", left, err)
	}
	if len(revoked) != 1 || revoked[0] != "shop/web" {
		t.Errorf("pull credentials revoked by Stop: %q, want shop/web's", revoked)
	}
	if err := d.Stop(ctx, h); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// Recover finds a pod by its instance label when the name in the handle
// no longer matches, and reports ErrNotFound when there is none.
func TestRecoverByLabel(t *testing.T) {
	c := apiCluster(t)
	d := newDriver(t, Config{REST: c.Config})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := d.create(ctx, testSpec(t, "inst2"))
	if err != nil {
		t.Fatal(err)
	}
	pod, _ := c.Client.CoreV1().Pods(st.Namespace).Get(ctx, st.Pod, metav1.GetOptions{})
	lost := st
	lost.Pod, lost.UID = "renamed", ""
	raw, _ := json.Marshal(lost)
	h := &runtime.Handle{ID: "inst2", Driver: Name, State: raw}
	d2 := newDriver(t, Config{REST: c.Config})
	if err := d2.Recover(ctx, h); err != nil {
		t.Fatalf("Recover by label: %v", err)
	}
	after, _ := c.Client.CoreV1().Pods(st.Namespace).Get(ctx, st.Pod, metav1.GetOptions{})
	if after.UID != pod.UID || after.ResourceVersion != pod.ResourceVersion {
		t.Errorf("Recover changed the pod (uid %s → %s, version %s → %s)", pod.UID, after.UID, pod.ResourceVersion, after.ResourceVersion)
	}
	if err := d2.Stop(ctx, h); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := newDriver(t, Config{REST: c.Config}).Recover(ctx, h); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Recover after Stop = %v, want ErrNotFound", err)
	}
}

// A pod no node takes (no scheduler here) fails Start when its context
// ends, saying where it is stuck, and leaves nothing behind.
func TestStartPendingFails(t *testing.T) {
	c := apiCluster(t)
	d := newDriver(t, Config{REST: c.Config})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := d.Start(ctx, testSpec(t, "inst3"))
	if err == nil || !strings.Contains(err.Error(), "not placed on any node") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start of a pod no node takes = %v, want a deadline error saying it was not placed", err)
	}
	assertNothingLeft(t, c.Client, "slipway-proj1", "inst3")
}

// A namespace over its quota refuses the pod: Start says so.
func TestStartQuotaExceeded(t *testing.T) {
	c := apiCluster(t)
	d := newDriver(t, Config{REST: c.Config})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := d.Namespace("proj1")
	if err := d.ensureNamespace(ctx, ns, "proj1"); err != nil {
		t.Fatal(err)
	}
	hard := corev1.ResourceList{corev1.ResourceLimitsMemory: resource.MustParse("64Mi")}
	q, err := c.Client.CoreV1().ResourceQuotas(ns).Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "tight"}, Spec: corev1.ResourceQuotaSpec{Hard: hard},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// What the controller manager's quota controller does (there is none
	// here): admission judges by the quota's status.
	q.Status = corev1.ResourceQuotaStatus{Hard: hard, Used: corev1.ResourceList{corev1.ResourceLimitsMemory: resource.MustParse("0")}}
	if _, err := c.Client.CoreV1().ResourceQuotas(ns).UpdateStatus(ctx, q, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = d.Start(ctx, testSpec(t, "inst4"))
	if err == nil || !strings.Contains(err.Error(), "over its resource quota") {
		t.Fatalf("Start over quota = %v, want a quota error", err)
	}
	assertNothingLeft(t, c.Client, ns, "inst4")
}

// An API server that cannot be reached fails Start within its context,
// saying so.
func TestStartAPIUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	cl := &rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	d := newDriver(t, Config{REST: cl})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := d.Start(ctx, testSpec(t, "inst5"))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") && !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("Start with no API server = %v, want an unreachable error", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Start with no API server hung past its context")
	}
}

func assertNothingLeft(t *testing.T, c k8s.Interface, ns, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sel := metav1.ListOptions{LabelSelector: LabelInstance + "=" + id}
	pods, err := c.CoreV1().Pods(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := c.CoreV1().Secrets(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items)+len(secrets.Items) != 0 {
		t.Errorf("left behind: %d pods, %d secrets", len(pods.Items), len(secrets.Items))
	}
}

// The RBAC manifest in README.md ("Running on Kubernetes") grants all
// that the driver does: a user bound to its ClusterRole and nothing else
// starts (creates) and stops an instance.
func TestREADMERBACSuffices(t *testing.T) {
	c := apiCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "<!-- rbac:begin -->\n```yaml\n")
	block, _, ok2 := strings.Cut(block, "```\n<!-- rbac:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no RBAC manifest between <!-- rbac:begin --> and <!-- rbac:end -->")
	}
	var role rbacv1.ClusterRole
	var binding rbacv1.ClusterRoleBinding
	docs := strings.Split(block, "\n---\n")
	if len(docs) != 2 {
		t.Fatalf("the RBAC manifest has %d documents, want a ClusterRole and a ClusterRoleBinding", len(docs))
	}
	if err := yaml.Unmarshal([]byte(docs[0]), &role); err != nil || role.Kind != "ClusterRole" {
		t.Fatalf("the manifest's first document is not a ClusterRole: %v", err)
	}
	if err := yaml.Unmarshal([]byte(docs[1]), &binding); err != nil || binding.Kind != "ClusterRoleBinding" {
		t.Fatalf("the manifest's second document is not a ClusterRoleBinding: %v", err)
	}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The test's user stands in for the manifest's service account.
	binding.Subjects = []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: ktest.UserName}}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The API server's authorizer learns of a binding from its informers,
	// a moment after the binding is stored.
	waitCanCreateNamespaces(ctx, t, c.Client, true)
	d := newDriver(t, Config{REST: c.User, PullToken: func(string) (string, func(), error) { return "swg_x", func() {}, nil }})
	st, err := d.create(ctx, testSpec(t, "inst6"))
	if err != nil {
		t.Fatalf("create with the README's rights: %v", err)
	}
	raw, _ := json.Marshal(st)
	h := &runtime.Handle{ID: "inst6", Driver: Name, State: raw}
	if err := d.Recover(ctx, h); err != nil {
		t.Fatalf("Recover with the README's rights: %v", err)
	}
	if _, err := d.Inspect(ctx, h); err != nil {
		t.Fatalf("Inspect with the README's rights: %v", err)
	}
	if err := d.Stop(ctx, h); err != nil {
		t.Fatalf("Stop with the README's rights: %v", err)
	}
	assertNothingLeft(t, c.Client, st.Namespace, "inst6")
	// Without the binding the same user can do nothing.
	if err := c.Client.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCanCreateNamespaces(ctx, t, c.Client, false)
	d2 := newDriver(t, Config{REST: c.User})
	if _, err := d2.create(ctx, testSpec(t, "inst7")); err == nil || !strings.Contains(err.Error(), "RBAC") {
		t.Errorf("create without rights = %v, want the cluster's refusal pointing at the RBAC manifest", err)
	}
}

// waitCanCreateNamespaces waits, within ctx, until the API server's
// authorizer says whether ktest's user may create namespaces as want.
func waitCanCreateNamespaces(ctx context.Context, t *testing.T, client k8s.Interface, want bool) {
	t.Helper()
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               ktest.UserName,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "create", Resource: "namespaces"},
	}}
	for {
		res, err := client.AuthorizationV1().SubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err == nil && res.Status.Allowed == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the authorizer never said allowed=%v for %s creating namespaces (last: %v, %v)", want, ktest.UserName, res, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
