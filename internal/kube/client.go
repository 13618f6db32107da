//go:build !nokube

package kube

import (
	"context"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// restConfig is the API server's address and credentials: the pod's service
// account (rest.InClusterConfig) when kubeconfig is empty, else the current
// context of that kubeconfig file.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kube: in-cluster config (no kubeconfig given): %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kube: kubeconfig %s: %w", kubeconfig, err)
	}
	return c, nil
}

// coreV1Client is a REST client for the core/v1 API group only, with a
// scheme that knows core/v1 and the meta types its lists and watches need:
// what client-go's generated clientset does for every group, done here for
// the one group oomhero reads, so the clientset is not linked.
func coreV1Client(c *rest.Config, log *slog.Logger) (*rest.RESTClient, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("kube: registering core/v1 types: %w", err)
	}
	c = rest.CopyConfig(c)
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.APIPath = "/api"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	// Protobuf is what the kubelet uses too: smaller on the wire and
	// cheaper to decode than JSON; JSON is the fallback any server speaks.
	c.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	c.ContentType = "application/json"
	if c.UserAgent == "" {
		c.UserAgent = "oomhero"
	}
	c.WarningHandlerWithContext = warningLogger{log}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("kube: REST client for %s: %w", c.Host, err)
	}
	return rc, nil
}

// warningLogger logs the API server's warnings (deprecations and the like)
// through oomhero's logger instead of klog's global one.
type warningLogger struct{ log *slog.Logger }

func (w warningLogger) HandleWarningHeaderWithContext(ctx context.Context, code int, agent string, text string) {
	w.log.WarnContext(ctx, "kube: API server warning", "code", code, "agent", agent, "warning", text)
}
