//go:build nokube

package kube

import "context"

// With the nokube build tag the package links no Kubernetes client: the
// client-go informer costs the binary about 8 MB and every process about
// 3 MB of RSS at start (measured in the package's report), which a sidecar
// that never asks the API server for pods should not pay. ParseCgroupPath is
// the same in both builds; Pods cannot be made.

// Pods is not available in a nokube build: NewPods returns ErrNoAPI.
type Pods struct{}

// NewPods returns ErrNoAPI.
func NewPods(ctx context.Context, cfg PodsConfig) (*Pods, error) { return nil, ErrNoAPI }

// Lookup reports false: there is no index.
func (p *Pods) Lookup(ref Ref) (Identity, bool) { return Identity{}, false }

// OnDelete does nothing: no pod is ever known.
func (p *Pods) OnDelete(f func(podUID string)) {}

// Synced reports false.
func (p *Pods) Synced() bool { return false }

// WaitSynced returns ErrNoAPI.
func (p *Pods) WaitSynced(ctx context.Context) error { return ErrNoAPI }
