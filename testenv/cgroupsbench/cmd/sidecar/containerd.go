//go:build containerd

package main

import (
	"github.com/containerd/cgroups/v3/cgroup1"

	"github.com/oomhero/oomhero/internal/watch"
)

func newReader(d watch.CgroupDir, limit uint64) (func() (watch.Reading, error), error) {
	ctrl, err := cgroup1.Load(cgroup1.StaticPath("/"+d.Rel),
		cgroup1.WithHierarchy(cgroup1.SingleSubsystem(cgroup1.Default, cgroup1.Memory)))
	if err != nil {
		return nil, err
	}
	return func() (watch.Reading, error) {
		st, err := ctrl.Stat(cgroup1.IgnoreNotExist)
		if err != nil {
			return watch.Reading{}, err
		}
		return watch.Reading{ID: 1, Usage: st.Memory.Usage.Usage, InactiveFile: st.Memory.TotalInactiveFile, Limit: limit}, nil
	}, nil
}
