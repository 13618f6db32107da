package vm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Kernel is a kernel extracted from a Debian linux-image package.
type Kernel struct {
	// Package is the Debian package name, e.g. linux-image-6.1.0-56-cloud-amd64.
	Package string `json:"package"`
	// Version is the package version, e.g. 6.1.192-2.
	Version string `json:"version"`
	// Release is the kernel release (uname -r), e.g. 6.1.0-56-cloud-amd64.
	Release string `json:"release"`
	// Vmlinuz is the path of the kernel image.
	Vmlinuz string `json:"vmlinuz"`
	// Modules maps a module name (brd) to the path of its .ko file.
	Modules map[string]string `json:"modules"`
}

// wantedModules are the modules the guest may load, by their path under
// /lib/modules/<release>/kernel.
var wantedModules = map[string]string{
	"brd": "drivers/block/brd.ko",
	// virtio-serial, the fast channel for the guest's reports.
	"virtio_ring":           "drivers/virtio/virtio_ring.ko",
	"virtio":                "drivers/virtio/virtio.ko",
	"virtio_pci_modern_dev": "drivers/virtio/virtio_pci_modern_dev.ko",
	"virtio_pci_legacy_dev": "drivers/virtio/virtio_pci_legacy_dev.ko",
	"virtio_pci":            "drivers/virtio/virtio_pci.ko",
	"virtio_console":        "drivers/char/virtio_console.ko",
}

var cloudImage = regexp.MustCompile(`^linux-image-6\.1\.0-([0-9]+)-cloud-amd64$`)

// kernelCandidates lists the Debian 6.1 cloud kernel packages apt knows,
// newest ABI first.
func kernelCandidates(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "pkgnames", "linux-image-6.1.0-").Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache pkgnames: %w", err)
	}
	type cand struct {
		name string
		abi  int
	}
	var cs []cand
	for _, l := range strings.Fields(string(out)) {
		if m := cloudImage.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			cs = append(cs, cand{l, n})
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].abi > cs[j].abi })
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.name
	}
	return names, nil
}

// FetchKernel returns the newest Debian 6.1 cloud kernel (package
// linux-image-6.1.0-N-cloud-amd64) that apt can download, extracted into
// cacheDir. A kernel already in cacheDir is reused without any download when
// apt lists no newer package. When apt knows no such package, or none of the
// newest three downloads (stale lists), it runs apt-get update once.
func FetchKernel(ctx context.Context, cacheDir string) (*Kernel, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	names, err := kernelCandidates(ctx)
	if err == nil && len(names) == 0 {
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
			return nil, fmt.Errorf("apt-get update: %w: %s", uerr, tail(out))
		}
		names, err = kernelCandidates(ctx)
	}
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, errors.New("apt knows no linux-image-6.1.0-*-cloud-amd64 package (Debian bookworm sources needed)")
	}
	k, err := firstKernel(ctx, cacheDir, names)
	if err == nil {
		return k, nil
	}
	// Stale package lists name files the mirror no longer has: refresh once.
	if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
		return nil, fmt.Errorf("%w; apt-get update: %w: %s", err, uerr, tail(out))
	}
	if names, err = kernelCandidates(ctx); err != nil {
		return nil, err
	}
	return firstKernel(ctx, cacheDir, names)
}

// firstKernel returns the first of names (newest first) that is cached or
// downloads, trying at most three downloads.
func firstKernel(ctx context.Context, cacheDir string, names []string) (*Kernel, error) {
	var errs []error
	for _, name := range names {
		if k, err := cachedKernel(cacheDir, name); err == nil {
			return k, nil
		}
		k, err := downloadKernel(ctx, cacheDir, name)
		if err == nil {
			return k, nil
		}
		errs = append(errs, err)
		if len(errs) == 3 {
			break
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("fetch kernel: no candidate package")
	}
	return nil, fmt.Errorf("fetch kernel: %w", errors.Join(errs...))
}

func cachedKernel(cacheDir, name string) (*Kernel, error) {
	b, err := os.ReadFile(filepath.Join(cacheDir, name, "kernel.json"))
	if err != nil {
		return nil, err
	}
	var k Kernel
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return nil, err
	}
	for mod := range wantedModules {
		if _, err := os.Stat(k.Modules[mod]); err != nil {
			return nil, fmt.Errorf("%s: module %s: %w", name, mod, err)
		}
	}
	return &k, nil
}

func downloadKernel(ctx context.Context, cacheDir, name string) (*Kernel, error) {
	work, err := os.MkdirTemp(cacheDir, "download-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	// apt drops privileges to _apt for downloads; let it write here.
	os.Chmod(work, 0o777)
	cmd := exec.CommandContext(ctx, "apt-get", "download", name)
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get download %s: %w: %s", name, err, tail(out))
	}
	debs, _ := filepath.Glob(filepath.Join(work, name+"_*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s: expected one .deb, found %d", name, len(debs))
	}
	version := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(debs[0]), name+"_"), "_amd64.deb")
	x := filepath.Join(work, "x")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, tail(out))
	}
	images, _ := filepath.Glob(filepath.Join(x, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return nil, fmt.Errorf("%s: expected one boot/vmlinuz-*, found %d", name, len(images))
	}
	release := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	dst := filepath.Join(cacheDir, name)
	tmpDst := dst + ".new"
	os.RemoveAll(tmpDst)
	if err := os.MkdirAll(tmpDst, 0o755); err != nil {
		return nil, err
	}
	k := &Kernel{Package: name, Version: version, Release: release,
		Vmlinuz: filepath.Join(dst, "vmlinuz"), Modules: map[string]string{}}
	if err := copyFile(images[0], filepath.Join(tmpDst, "vmlinuz")); err != nil {
		return nil, err
	}
	for mod, rel := range wantedModules {
		src := filepath.Join(x, "lib", "modules", release, "kernel", rel)
		if err := copyFile(src, filepath.Join(tmpDst, mod+".ko")); err != nil {
			return nil, fmt.Errorf("%s: module %s: %w", name, mod, err)
		}
		k.Modules[mod] = filepath.Join(dst, mod+".ko")
	}
	cfgs, _ := filepath.Glob(filepath.Join(x, "boot", "config-*"))
	for _, c := range cfgs {
		copyFile(c, filepath.Join(tmpDst, "config"))
	}
	b, _ := json.MarshalIndent(k, "", "  ")
	if err := os.WriteFile(filepath.Join(tmpDst, "kernel.json"), b, 0o644); err != nil {
		return nil, err
	}
	os.RemoveAll(dst)
	if err := os.Rename(tmpDst, dst); err != nil {
		return nil, err
	}
	return k, nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
