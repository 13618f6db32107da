//go:build !containerd

package main

import (
	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/watch"
)

func newReader(d watch.CgroupDir, limit uint64) (func() (watch.Reading, error), error) {
	r, err := cgroup.NewReader(d, watch.V1, limit)
	if err != nil {
		return nil, err
	}
	return r.Read, nil
}
