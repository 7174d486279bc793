package kubernetes

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// client makes the few calls the driver needs (namespaces, secrets, pods
// and their logs of the core API group; network policies) on REST clients
// whose scheme knows those two groups alone. client-go's typed clients register every API
// group of Kubernetes at init, which doubled the slipway binary and added
// 16 MB to every server's memory, whether it runs on a cluster or not.
type client struct {
	rc  *rest.RESTClient // the core group
	net *rest.RESTClient // networking.k8s.io (network policies)
	pc  k8sruntime.ParameterCodec
}

func newClient(cfg *rest.Config) (*client, error) {
	scheme := k8sruntime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := networkingv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	group := func(path string, gv schema.GroupVersion) (*rest.RESTClient, error) {
		c := rest.CopyConfig(cfg)
		c.APIPath = path
		c.GroupVersion = &gv
		c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
		if c.UserAgent == "" {
			c.UserAgent = "slipway"
		}
		return rest.RESTClientFor(c)
	}
	rc, err := group("/api", corev1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	net, err := group("/apis", networkingv1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	return &client{rc: rc, net: net, pc: k8sruntime.NewParameterCodec(scheme)}, nil
}

type (
	namespaces struct{ c *client }
	secrets    struct {
		c  *client
		ns string
	}
	pods struct {
		c  *client
		ns string
	}
	networkPolicies struct {
		c  *client
		ns string
	}
)

func (n networkPolicies) Create(ctx context.Context, np *networkingv1.NetworkPolicy) (*networkingv1.NetworkPolicy, error) {
	out := &networkingv1.NetworkPolicy{}
	return out, n.c.net.Post().Namespace(n.ns).Resource("networkpolicies").Body(np).Do(ctx).Into(out)
}

func (n networkPolicies) Update(ctx context.Context, np *networkingv1.NetworkPolicy) (*networkingv1.NetworkPolicy, error) {
	out := &networkingv1.NetworkPolicy{}
	return out, n.c.net.Put().Namespace(n.ns).Resource("networkpolicies").Name(np.Name).Body(np).Do(ctx).Into(out)
}

func (c *client) NetworkPolicies(ns string) networkPolicies { return networkPolicies{c, ns} }
func (c *client) Namespaces() namespaces                    { return namespaces{c} }
func (c *client) Secrets(ns string) secrets                 { return secrets{c, ns} }
func (c *client) Pods(ns string) pods                       { return pods{c, ns} }

func (n namespaces) Create(ctx context.Context, ns *corev1.Namespace, _ metav1.CreateOptions) (*corev1.Namespace, error) {
	out := &corev1.Namespace{}
	return out, n.c.rc.Post().Resource("namespaces").Body(ns).Do(ctx).Into(out)
}

func (s secrets) Create(ctx context.Context, sec *corev1.Secret, _ metav1.CreateOptions) (*corev1.Secret, error) {
	out := &corev1.Secret{}
	return out, s.c.rc.Post().Namespace(s.ns).Resource("secrets").Body(sec).Do(ctx).Into(out)
}

func (s secrets) Update(ctx context.Context, sec *corev1.Secret, _ metav1.UpdateOptions) (*corev1.Secret, error) {
	out := &corev1.Secret{}
	return out, s.c.rc.Put().Namespace(s.ns).Resource("secrets").Name(sec.Name).Body(sec).Do(ctx).Into(out)
}

func (s secrets) DeleteCollection(ctx context.Context, opts metav1.DeleteOptions, list metav1.ListOptions) error {
	return s.c.rc.Delete().Namespace(s.ns).Resource("secrets").VersionedParams(&list, s.c.pc).Body(&opts).Do(ctx).Error()
}

func (p pods) Create(ctx context.Context, pod *corev1.Pod, _ metav1.CreateOptions) (*corev1.Pod, error) {
	out := &corev1.Pod{}
	return out, p.c.rc.Post().Namespace(p.ns).Resource("pods").Body(pod).Do(ctx).Into(out)
}

func (p pods) Get(ctx context.Context, name string, _ metav1.GetOptions) (*corev1.Pod, error) {
	out := &corev1.Pod{}
	return out, p.c.rc.Get().Namespace(p.ns).Resource("pods").Name(name).Do(ctx).Into(out)
}

func (p pods) List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	out := &corev1.PodList{}
	return out, p.c.rc.Get().Namespace(p.ns).Resource("pods").VersionedParams(&opts, p.c.pc).Do(ctx).Into(out)
}

func (p pods) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return p.c.rc.Delete().Namespace(p.ns).Resource("pods").Name(name).Body(&opts).Do(ctx).Error()
}

func (p pods) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return p.c.rc.Get().Namespace(p.ns).Resource("pods").VersionedParams(&opts, p.c.pc).Watch(ctx)
}

func (p pods) GetLogs(name string, opts *corev1.PodLogOptions) *rest.Request {
	return p.c.rc.Get().Namespace(p.ns).Resource("pods").Name(name).SubResource("log").VersionedParams(opts, p.c.pc)
}
