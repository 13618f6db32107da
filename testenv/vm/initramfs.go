package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
)

// Initramfs is the content of a newc cpio archive, the format the kernel
// unpacks into its root file system. The zero value is empty.
type Initramfs struct {
	entries map[string]entry
}

type entry struct {
	mode    uint32 // file type and permissions, as in stat(2)
	hostSrc string // file content from this host file
	data    []byte // or this content (symlink target for links)
}

const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
)

func (r *Initramfs) put(name string, e entry) {
	if r.entries == nil {
		r.entries = map[string]entry{}
	}
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := r.entries[d]; !ok {
			r.entries[d] = entry{mode: modeDir | 0o755}
		}
	}
	r.entries[name] = e
}

// AddFile adds the host file src as name with permission bits perm.
func (r *Initramfs) AddFile(name, src string, perm os.FileMode) {
	r.put(name, entry{mode: modeFile | uint32(perm.Perm()), hostSrc: src})
}

// AddBytes adds a file with the given content.
func (r *Initramfs) AddBytes(name string, data []byte, perm os.FileMode) {
	r.put(name, entry{mode: modeFile | uint32(perm.Perm()), data: data})
}

// AddSymlink adds a symbolic link name pointing to target.
func (r *Initramfs) AddSymlink(name, target string) {
	r.put(name, entry{mode: modeSymlink | 0o777, data: []byte(target)})
}

// AddDir adds an empty directory.
func (r *Initramfs) AddDir(name string) {
	r.put(name, entry{mode: modeDir | 0o755})
}

// AddBusybox adds busybox as /bin/busybox and a symbolic link for each of
// its applets in /bin (sh, mount, sleep, ...).
func (r *Initramfs) AddBusybox(ctx context.Context, busybox string) error {
	out, err := exec.CommandContext(ctx, busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w", busybox, err)
	}
	r.AddFile("bin/busybox", busybox, 0o755)
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if a := strings.TrimSpace(sc.Text()); a != "" && a != "busybox" && !strings.Contains(a, "/") {
			r.AddSymlink("bin/"+a, "busybox")
		}
	}
	return nil
}

// WriteTo writes the archive (uncompressed newc cpio: the kernel unpacks it
// faster than a compressed one under TCG).
func (r *Initramfs) WriteTo(w io.Writer) (int64, error) {
	names := make([]string, 0, len(r.entries))
	for n := range r.entries {
		names = append(names, n)
	}
	sort.Strings(names) // parents before children
	cw := &countWriter{w: bufio.NewWriterSize(w, 1<<20)}
	ino := uint32(1)
	for _, n := range names {
		e := r.entries[n]
		data := e.data
		if e.hostSrc != "" {
			b, err := os.ReadFile(e.hostSrc)
			if err != nil {
				return cw.n, fmt.Errorf("initramfs %s: %w", n, err)
			}
			data = b
		}
		nlink := uint32(1)
		if e.mode&0o170000 == modeDir {
			nlink = 2
		}
		if err := writeCpioEntry(cw, n, ino, e.mode, nlink, data); err != nil {
			return cw.n, err
		}
		ino++
	}
	if err := writeCpioEntry(cw, "TRAILER!!!", 0, 0, 1, nil); err != nil {
		return cw.n, err
	}
	return cw.n, cw.w.(*bufio.Writer).Flush()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func pad4(w *countWriter) error {
	if r := c4(w.n); r > 0 {
		_, err := w.Write(make([]byte, r))
		return err
	}
	return nil
}

func c4(n int64) int64 { return (4 - n%4) % 4 }

// writeCpioEntry writes one newc header, name and data.
func writeCpioEntry(w *countWriter, name string, ino, mode, nlink uint32, data []byte) error {
	if len(name)+1 > 4096 {
		return errors.New("cpio: name too long: " + name)
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	if _, err := io.WriteString(w, hdr+name+"\x00"); err != nil {
		return err
	}
	if err := pad4(w); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	return pad4(w)
}

// BuildStatic builds the Go package pkg (an import path or ./ path relative
// to dir) into out as a static linux/amd64 binary (CGO_ENABLED=0). With test
// set it builds the package's test binary (go test -c).
func BuildStatic(ctx context.Context, dir, pkg, out string, test bool) error {
	args := []string{"build", "-o", out, pkg}
	if test {
		args = []string{"test", "-c", "-o", out, pkg}
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, tail(b))
	}
	return nil
}
