//go:build nokube

package kube

import (
	"context"
	"errors"
	"testing"
)

func TestNoKube(t *testing.T) {
	p, err := NewPods(context.Background(), PodsConfig{NodeName: "n"})
	if !errors.Is(err, ErrNoAPI) || p != nil {
		t.Fatalf("NewPods in a nokube build = %v, %v; want nil, ErrNoAPI", p, err)
	}
	if _, ok := p.Lookup(Ref{PodUID: "x"}); ok || p.Synced() || !errors.Is(p.WaitSynced(context.Background()), ErrNoAPI) {
		t.Error("a nil nokube Pods claims to know pods")
	}
	p.OnDelete(func(string) {})
}
