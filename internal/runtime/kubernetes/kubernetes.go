// Package kubernetes runs app instances as pods of a Kubernetes cluster.
//
// Each project (Spec.Group) gets a namespace of its own, NamespacePrefix +
// the group ("slipway" for instances without one). Each instance is one
// Pod named after the instance, labelled with the instance, deployment and
// project ids (LabelInstance, LabelDeployment, LabelProject), with:
//
//   - its variables in a Secret (<id>-env, the container's envFrom), PORT
//     set apart;
//   - when Config.PullToken is set, an image-pull Secret (<id>-pull)
//     holding a token that can pull that one repository of Slipway's
//     registry, and nothing else;
//   - limits from runtime.Limits: memory, CPU and ephemeral storage
//     (pids are the node's podPidsLimit); requests of a quarter of the
//     memory and a tenth of the CPU, so that idle apps pack;
//   - the sandbox's isolation as its security context: no privilege
//     escalation, Docker's default capabilities without NET_RAW, the
//     runtime's default seccomp profile, a user namespace of its own when
//     Config.UserNamespaces is set, and Config.RuntimeClass (gVisor, Kata)
//     when set;
//   - restartPolicy Never: Slipway's lifecycle decides what happens when an
//     app exits, as with the other drivers;
//   - its namespace's NetworkPolicy (EgressPolicyName), which keeps it from
//     the nodes' and other private addresses where the cluster's network
//     plugin enforces policies.
//
// A bare Pod rather than a Deployment of one replica: Slipway already
// owns replicas, restarts, rollouts and scale to zero; a Deployment would
// restart the app behind its back and hide the exit that Wait reports.
//
// The server reaches the app at the pod's IP (Dial), so it must run where
// pod IPs are routable (on a node, or in the cluster). Stdout and stderr
// follow the pod's log stream into the spec's files; after a restart of the
// server (Recover) they resume where the files end. Start fails with a
// clear error, never hangs past its context, when the image cannot be
// pulled, the pod cannot be scheduled or admitted, the namespace's quota
// is exceeded, or the API server cannot be reached.
package kubernetes

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/slipwayhq/slipway/internal/runtime"
)

// Name is the driver's name, as stored in Handle.Driver, unless
// Config.Name says otherwise.
const Name = "kubernetes"

// Labels every object of an instance carries.
const (
	LabelManagedBy  = "app.kubernetes.io/managed-by" // "slipway"
	LabelInstance   = "slipway.dev/instance"
	LabelDeployment = "slipway.dev/deployment"
	LabelProject    = "slipway.dev/project"
)

// container is the app's container in its pod.
const container = "app"

// Config configures a Driver.
type Config struct {
	// REST says where the cluster's API server is and how to
	// authenticate (NewRESTConfig reads a kubeconfig). Required.
	REST *rest.Config
	// Name is the driver's name (Handle.Driver): drivers of one server
	// that differ in their isolation (RuntimeClass) go by different
	// names. If empty, Name.
	Name string
	// NamespacePrefix names each project's namespace: the prefix and the
	// project's id. If empty, "slipway-".
	NamespacePrefix string
	// RegistryHost is the host[:port] at which the cluster's nodes reach
	// Slipway's registry; it replaces the registry host of each image
	// reference. If empty, references are used as they are.
	RegistryHost string
	// PullToken, if set, returns a registry credential (the password of
	// HTTP basic auth) that can pull only the repository repo, and a func
	// that revokes it (called by Stop); each pod gets it in an image-pull
	// Secret. If nil, pods pull anonymously.
	PullToken func(repo string) (token string, revoke func(), err error)
	// NodeName, if set, places every pod on that node, without a
	// scheduler; else the cluster's scheduler places them.
	NodeName string
	// RuntimeClass, if set, is the pods' runtimeClassName (a sandbox such
	// as gVisor or Kata that the cluster defines).
	RuntimeClass string
	// UserNamespaces runs each pod in a user namespace of its own
	// (hostUsers: false); the nodes must support it.
	UserNamespaces bool
	// SplitLogStreams asks the API server for stdout and stderr apart (the
	// PodLogsQuerySplitStreams feature, alpha in Kubernetes 1.32–1.36), so
	// that each goes to its file. If false, both go to the stdout file.
	SplitLogStreams bool
	// Log receives what goes wrong while following logs. If nil,
	// slog.Default().
	Log *slog.Logger
	// StopGrace is how long a pod gets after SIGTERM before SIGKILL. If
	// zero, 5 seconds.
	StopGrace time.Duration
	// DenyEgress are the IPv4 ranges the namespace's egress policy keeps
	// pods from (EgressPolicyName): the server gives the private and
	// reserved ranges its own instance networks deny (netns.Reserved).
	DenyEgress []netip.Prefix
}

// EgressPolicyName is the NetworkPolicy of each project's namespace that
// keeps its pods from private and reserved addresses (the nodes', the
// cloud's metadata service, other pods, the cluster's services, the LAN):
// egress is allowed to every other IPv4 address, and to the cluster's DNS
// (pods labelled k8s-app=kube-dns in kube-system) on port 53; IPv6 egress
// is denied, as instances on a host have none. Only a network plugin that
// enforces NetworkPolicy applies it. Policies add up: a cluster's
// administrator opens more for a namespace with a policy of their own.
const EgressPolicyName = "slipway-egress"

// Driver runs instances as pods. It is safe for concurrent use.
type Driver struct {
	cfg Config
	c   *client

	ctx    context.Context // ends when the driver is closed
	cancel context.CancelFunc

	mu         sync.Mutex
	namespaces map[string]bool      // namespaces known to exist
	instances  map[string]*instance // by instance id
	revokes    map[string]func()    // pull credentials, by instance id
	closed     bool
}

// instance is what the driver keeps of a started or recovered pod.
type instance struct {
	st     state
	ip     string
	cancel context.CancelFunc // stops its log followers
	logs   sync.WaitGroup
}

// state is a handle's opaque state.
type state struct {
	Namespace string    `json:"namespace"`
	Pod       string    `json:"pod"`
	UID       types.UID `json:"uid"`
	Port      int       `json:"port"`
	Stdout    string    `json:"stdout"`
	Stderr    string    `json:"stderr"`
}

// New returns a driver.
func New(cfg Config) (*Driver, error) {
	if cfg.REST == nil {
		return nil, errors.New("kubernetes driver: no API server (Config.REST)")
	}
	c, err := newClient(cfg.REST)
	if err != nil {
		return nil, fmt.Errorf("kubernetes driver: %w", err)
	}
	if cfg.Name == "" {
		cfg.Name = Name
	}
	if cfg.NamespacePrefix == "" {
		cfg.NamespacePrefix = "slipway-"
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Driver{cfg: cfg, c: c, ctx: ctx, cancel: cancel,
		namespaces: map[string]bool{}, instances: map[string]*instance{}, revokes: map[string]func(){}}, nil
}

// Name implements runtime.Driver.
func (d *Driver) Name() string { return d.cfg.Name }

// Close stops following logs; the pods keep running.
func (d *Driver) Close() error {
	d.mu.Lock()
	d.closed = true
	insts := make([]*instance, 0, len(d.instances))
	for _, in := range d.instances {
		insts = append(insts, in)
	}
	d.mu.Unlock()
	d.cancel()
	for _, in := range insts {
		in.logs.Wait()
	}
	return nil
}

// Namespace is the namespace of a group's instances.
func (d *Driver) Namespace(group string) string {
	if group == "" {
		return strings.TrimSuffix(d.cfg.NamespacePrefix, "-")
	}
	return d.cfg.NamespacePrefix + group
}

// Start implements runtime.Driver: it creates the instance's secrets and
// pod and returns once the app's container runs (or has already exited).
func (d *Driver) Start(ctx context.Context, spec runtime.Spec) (*runtime.Handle, error) {
	st, err := d.create(ctx, spec)
	if err != nil {
		return nil, err
	}
	running, err := d.waitStarted(ctx, st)
	if err != nil {
		d.cleanup(st.Namespace, spec.ID)
		return nil, err
	}
	raw, _ := json.Marshal(st)
	h := &runtime.Handle{ID: spec.ID, Driver: d.cfg.Name, State: raw}
	d.adopt(h.ID, st, running, false)
	return h, nil
}

// create makes an instance's namespace (if needed), secrets and pod.
func (d *Driver) create(ctx context.Context, spec runtime.Spec) (state, error) {
	if spec.Port == 0 {
		spec.Port = 3000
	}
	ns := d.Namespace(spec.Group)
	if err := d.ensureNamespace(ctx, ns, spec.Group); err != nil {
		return state{}, err
	}
	pod, secrets, revoke, err := d.objects(spec, ns)
	if err != nil {
		return state{}, err
	}
	if revoke != nil {
		d.mu.Lock()
		d.revokes[spec.ID] = revoke
		d.mu.Unlock()
	}
	for _, s := range secrets {
		if err := retry(ctx, func() error {
			_, err := d.c.Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				_, err = d.c.Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
			}
			return err
		}); err != nil {
			d.cleanup(ns, spec.ID)
			return state{}, refused(ns, "secret", err)
		}
	}
	var created *corev1.Pod
	if err := retry(ctx, func() (err error) {
		created, err = d.c.Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		return err
	}); err != nil {
		d.cleanup(ns, spec.ID)
		return state{}, refused(ns, "pod", err)
	}
	return state{Namespace: ns, Pod: created.Name, UID: created.UID, Port: spec.Port,
		Stdout: spec.StdoutPath, Stderr: spec.StderrPath}, nil
}

// ensureNamespace creates a group's namespace unless it is known to exist.
func (d *Driver) ensureNamespace(ctx context.Context, ns, group string) error {
	d.mu.Lock()
	known := d.namespaces[ns]
	d.mu.Unlock()
	if known {
		return nil
	}
	labels := map[string]string{LabelManagedBy: "slipway"}
	if group != "" {
		labels[LabelProject] = group
	}
	err := retry(ctx, func() error {
		_, err := d.c.Namespaces().Create(ctx, &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
	if err != nil {
		return refused(ns, "namespace", err)
	}
	pol := egressPolicy(ns, labels, d.cfg.DenyEgress)
	err = retry(ctx, func() error {
		_, err := d.c.NetworkPolicies(ns).Create(ctx, pol)
		if apierrors.IsAlreadyExists(err) {
			// Made by an earlier server: this one's rules hold.
			_, err = d.c.NetworkPolicies(ns).Update(ctx, pol)
		}
		return err
	})
	if err != nil {
		return refused(ns, "network policy", err)
	}
	d.mu.Lock()
	d.namespaces[ns] = true
	d.mu.Unlock()
	return nil
}

// egressPolicy is a namespace's EgressPolicyName.
func egressPolicy(ns string, labels map[string]string, deny []netip.Prefix) *networkingv1.NetworkPolicy {
	var except []string
	for _, p := range deny {
		except = append(except, p.String())
	}
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	dns := intstr.FromInt32(53)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: EgressPolicyName, Namespace: ns, Labels: labels},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{LabelManagedBy: "slipway"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: except}}}},
				{
					To: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
						PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
					}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}},
				},
			},
		},
	}
}

// objects builds an instance's pod and secrets.
func (d *Driver) objects(spec runtime.Spec, ns string) (pod *corev1.Pod, secrets []*corev1.Secret, revoke func(), err error) {
	labels := map[string]string{LabelManagedBy: "slipway", LabelInstance: spec.ID}
	if spec.Group != "" {
		labels[LabelProject] = spec.Group
	}
	env := map[string][]byte{}
	for _, kv := range spec.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "PORT" {
			continue
		}
		env[k] = []byte(v)
		if k == "SLIPWAY_DEPLOYMENT_ID" && validLabel(v) {
			labels[LabelDeployment] = v
		}
	}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
	}
	envSecret := &corev1.Secret{ObjectMeta: meta(spec.ID + "-env"), Type: corev1.SecretTypeOpaque, Data: env}
	secrets = []*corev1.Secret{envSecret}

	image, repo, err := d.image(spec.Image)
	if err != nil {
		return nil, nil, nil, err
	}
	var pullSecrets []corev1.LocalObjectReference
	if d.cfg.PullToken != nil {
		var token string
		token, revoke, err = d.cfg.PullToken(repo)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("a pull credential for %s: %w", repo, err)
		}
		host, _, _ := strings.Cut(image, "/")
		cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{
			"username": "slipway", "password": token,
			"auth": base64.StdEncoding.EncodeToString([]byte("slipway:" + token))}}})
		pull := &corev1.Secret{ObjectMeta: meta(spec.ID + "-pull"), Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: cfg}}
		secrets = append(secrets, pull)
		pullSecrets = []corev1.LocalObjectReference{{Name: pull.Name}}
	}

	lim := spec.Limits
	if lim.MemoryBytes <= 0 {
		lim.MemoryBytes = 512 << 20
	}
	if lim.CPUMillis <= 0 {
		lim.CPUMillis = 1000
	}
	if lim.DiskBytes <= 0 {
		lim.DiskBytes = 256 << 20
	}
	cpuReq := max(lim.CPUMillis/10, 1)
	grace := int64(d.cfg.StopGrace / time.Second)
	no := false
	c := corev1.Container{
		Name:            container,
		Image:           image,
		Command:         spec.Command,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Env:             []corev1.EnvVar{{Name: "PORT", Value: strconv.Itoa(spec.Port)}},
		EnvFrom:         []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: envSecret.Name}}}},
		Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: int32(spec.Port), Protocol: corev1.ProtocolTCP}},
		Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{
				corev1.ResourceMemory:           *resource.NewQuantity(lim.MemoryBytes, resource.BinarySI),
				corev1.ResourceCPU:              *resource.NewMilliQuantity(lim.CPUMillis, resource.DecimalSI),
				corev1.ResourceEphemeralStorage: *resource.NewQuantity(lim.DiskBytes, resource.BinarySI),
			},
			Requests: corev1.ResourceList{
				corev1.ResourceMemory: *resource.NewQuantity(lim.MemoryBytes/4, resource.BinarySI),
				corev1.ResourceCPU:    *resource.NewMilliQuantity(cpuReq, resource.DecimalSI),
			},
		},
		SecurityContext: &corev1.SecurityContext{
			Privileged:               &no,
			AllowPrivilegeEscalation: &no,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	pod = &corev1.Pod{
		ObjectMeta: meta(spec.ID),
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{c},
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			TerminationGracePeriodSeconds: &grace,
			ImagePullSecrets:              pullSecrets,
			NodeName:                      d.cfg.NodeName,
		},
	}
	if d.cfg.RuntimeClass != "" {
		rc := d.cfg.RuntimeClass
		pod.Spec.RuntimeClassName = &rc
	}
	if d.cfg.UserNamespaces {
		pod.Spec.HostUsers = &no
	}
	return pod, secrets, revoke, nil
}

// image rewrites ref's registry host to RegistryHost and returns it with
// its repository (the path without host, tag or digest).
func (d *Driver) image(ref string) (image, repo string, err error) {
	host, rest, ok := strings.Cut(ref, "/")
	if !ok || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		return "", "", fmt.Errorf("image %q names no registry", ref)
	}
	repo = rest
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i >= 0 {
		repo = repo[:i]
	}
	if d.cfg.RegistryHost != "" {
		host = d.cfg.RegistryHost
	}
	return host + "/" + rest, repo, nil
}

func validLabel(v string) bool {
	if v == "" || len(v) > 63 {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// cleanup deletes what Start made of an instance that did not start.
func (d *Driver) cleanup(ns, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	zero := int64(0)
	d.c.Pods(ns).Delete(ctx, id, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	d.deleteSecrets(ctx, ns, id)
	d.revoke(id)
}

// revoke revokes an instance's pull credential, if it has one here.
func (d *Driver) revoke(id string) {
	d.mu.Lock()
	r := d.revokes[id]
	delete(d.revokes, id)
	d.mu.Unlock()
	if r != nil {
		r()
	}
}

func (d *Driver) deleteSecrets(ctx context.Context, ns, id string) error {
	return retry(ctx, func() error {
		err := d.c.Secrets(ns).DeleteCollection(ctx, metav1.DeleteOptions{},
			metav1.ListOptions{LabelSelector: LabelInstance + "=" + id})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

// adopt records a started or recovered instance and starts following its
// logs: from the start, or, to resume, after what the files hold.
func (d *Driver) adopt(id string, st state, pod *corev1.Pod, resume bool) {
	lctx, cancel := context.WithCancel(d.ctx)
	in := &instance{st: st, cancel: cancel}
	if pod != nil {
		in.ip = pod.Status.PodIP
	}
	d.mu.Lock()
	if old := d.instances[id]; old != nil {
		old.cancel()
	}
	d.instances[id] = in
	d.mu.Unlock()
	d.follow(lctx, in, resume)
}

func (d *Driver) lookup(h *runtime.Handle) (*instance, state, error) {
	d.mu.Lock()
	in := d.instances[h.ID]
	d.mu.Unlock()
	if in != nil {
		return in, in.st, nil
	}
	var st state
	if err := json.Unmarshal(h.State, &st); err != nil || st.Pod == "" {
		return nil, st, fmt.Errorf("instance %s: no pod in its state: %w", h.ID, runtime.ErrNotFound)
	}
	return nil, st, nil
}

// getPod reads an instance's pod; ErrNotFound if it is gone or was
// replaced by another of the same name.
func (d *Driver) getPod(ctx context.Context, id string, st state) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := retry(ctx, func() (err error) {
		pod, err = d.c.Pods(st.Namespace).Get(ctx, st.Pod, metav1.GetOptions{})
		return err
	})
	if apierrors.IsNotFound(err) || (err == nil && st.UID != "" && pod.UID != st.UID) {
		return nil, fmt.Errorf("instance %s: pod %s/%s: %w", id, st.Namespace, st.Pod, runtime.ErrNotFound)
	}
	if err != nil {
		return nil, unreachable(err)
	}
	return pod, nil
}

// Inspect implements runtime.Driver. The PID is a number derived from the
// container's id (the pod's processes are not the server's to see): it
// tells instances apart and stays the same for one container.
func (d *Driver) Inspect(ctx context.Context, h *runtime.Handle) (runtime.Status, error) {
	_, st, err := d.lookup(h)
	if err != nil {
		return runtime.Status{}, err
	}
	pod, err := d.getPod(ctx, h.ID, st)
	if err != nil {
		return runtime.Status{}, err
	}
	return status(pod), nil
}

// appStatus is the app container's status in pod, if the kubelet
// reported one.
func appStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == container {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

func status(pod *corev1.Pod) runtime.Status {
	cs := appStatus(pod)
	if cs == nil {
		// Not started yet: still on its way.
		return runtime.Status{Running: pod.Status.Phase == corev1.PodPending, ExitCode: -1}
	}
	st := runtime.Status{PID: pseudoPID(cs.ContainerID)}
	switch {
	case cs.State.Running != nil:
		st.Running, st.StartedAt = true, cs.State.Running.StartedAt.Time
	case cs.State.Terminated != nil:
		t := cs.State.Terminated
		st.StartedAt, st.ExitedAt, st.ExitCode = t.StartedAt.Time, t.FinishedAt.Time, int(t.ExitCode)
		st.OOMKilled = t.Reason == "OOMKilled"
	default:
		// Waiting: not started, or failed to start.
		st.Running = pod.Status.Phase == corev1.PodPending && pod.DeletionTimestamp == nil
		st.ExitCode = -1
	}
	return st
}

func pseudoPID(containerID string) int {
	if containerID == "" {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(containerID))
	return int(h.Sum32()&0x3fffffff) + 1
}

// Dial implements runtime.Driver: a TCP connection to port at the pod's
// IP. The IP is cached, so that apps keep being served while the API
// server is unreachable.
func (d *Driver) Dial(ctx context.Context, h *runtime.Handle, port int) (net.Conn, error) {
	in, st, err := d.lookup(h)
	if err != nil {
		return nil, err
	}
	ip := ""
	if in != nil {
		d.mu.Lock()
		ip = in.ip
		d.mu.Unlock()
	}
	if ip == "" {
		pod, err := d.getPod(ctx, h.ID, st)
		if err != nil {
			return nil, err
		}
		if ip = pod.Status.PodIP; ip == "" {
			return nil, fmt.Errorf("instance %s: pod %s/%s has no IP yet", h.ID, st.Namespace, st.Pod)
		}
		if in != nil {
			d.mu.Lock()
			in.ip = ip
			d.mu.Unlock()
		}
	}
	var dialer net.Dialer
	return dialer.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
}

// Stop implements runtime.Driver: it deletes the pod (SIGTERM, SIGKILL
// after Config.StopGrace), waits until it is gone, and deletes the
// instance's secrets.
func (d *Driver) Stop(ctx context.Context, h *runtime.Handle) error {
	in, st, err := d.lookup(h)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	d.mu.Lock()
	if d.instances[h.ID] == in && in != nil {
		delete(d.instances, h.ID)
	}
	d.mu.Unlock()
	if in != nil {
		in.cancel()
	}
	grace := int64(d.cfg.StopGrace / time.Second)
	del := func(grace int64) error {
		opts := metav1.DeleteOptions{GracePeriodSeconds: &grace}
		if st.UID != "" {
			opts.Preconditions = &metav1.Preconditions{UID: &st.UID}
		}
		err := d.c.Pods(st.Namespace).Delete(ctx, st.Pod, opts)
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // gone, or another pod of the same name
		}
		return err
	}
	if err := retry(ctx, func() error { return del(grace) }); err != nil {
		return fmt.Errorf("stopping instance %s: %w", h.ID, unreachable(err))
	}
	// The kubelet stops the containers and then removes the pod. A node
	// that is gone never does: the pod is removed by force after the
	// grace period and some slack.
	force := time.Now().Add(d.cfg.StopGrace + 15*time.Second)
	for {
		_, err := d.getPod(ctx, h.ID, st)
		if errors.Is(err, runtime.ErrNotFound) {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stopping instance %s: pod %s/%s is still there: %w", h.ID, st.Namespace, st.Pod, ctx.Err())
		}
		if time.Now().After(force) {
			del(0)
			force = time.Now().Add(time.Hour)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if in != nil {
		in.logs.Wait()
	}
	if err := d.deleteSecrets(ctx, st.Namespace, h.ID); err != nil {
		return fmt.Errorf("stopping instance %s: deleting its secrets: %w", h.ID, unreachable(err))
	}
	d.revoke(h.ID)
	return nil
}

// Recover implements runtime.Driver: it finds the instance's pod (by name,
// else by its instance label), without restarting it, and resumes
// following its logs where the files end.
func (d *Driver) Recover(ctx context.Context, h *runtime.Handle) error {
	var st state
	if err := json.Unmarshal(h.State, &st); err != nil || st.Namespace == "" {
		return fmt.Errorf("instance %s: no pod in its state: %w", h.ID, runtime.ErrNotFound)
	}
	pod, err := d.getPod(ctx, h.ID, st)
	if errors.Is(err, runtime.ErrNotFound) {
		var list *corev1.PodList
		err = retry(ctx, func() (err error) {
			list, err = d.c.Pods(st.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelInstance + "=" + h.ID})
			return err
		})
		if err != nil {
			return unreachable(err)
		}
		if len(list.Items) != 1 || list.Items[0].DeletionTimestamp != nil {
			return fmt.Errorf("instance %s: %w", h.ID, runtime.ErrNotFound)
		}
		pod = &list.Items[0]
		st.Pod, st.UID = pod.Name, pod.UID
	} else if err != nil {
		return err
	}
	if pod.DeletionTimestamp != nil {
		return fmt.Errorf("instance %s: its pod is being deleted: %w", h.ID, runtime.ErrNotFound)
	}
	d.adopt(h.ID, st, pod, true)
	return nil
}

var (
	_ runtime.Driver = (*Driver)(nil)
)

// NewRESTConfig returns the API server's address and credentials from
// kubeconfig (a file), or, if kubeconfig is empty, those of the cluster
// the process runs in (its service account).
func NewRESTConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	// Each start and stop takes a few calls; the default (5/s) would
	// queue wakes behind each other.
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}
