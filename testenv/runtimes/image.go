package runtimes

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/oomhero/oomhero/testenv/pods"
)

// File is a file the image gets that is not a host file: a configuration,
// a script, a compiled example.
type File struct {
	Path string // absolute path in the image
	Mode fs.FileMode
	Data []byte
	// Host, when set, is a host file copied instead of Data.
	Host string
}

// Dir is a directory the image gets, with its owner.
type Dir struct {
	Path     string
	Mode     fs.FileMode
	UID, GID int
}

// ImageSpec is one runtime image: the files of some Debian packages as
// installed on this host, the shared libraries they need (ldd), and a few
// files of the suite's own.
type ImageSpec struct {
	Name     string   // short name, the tag is localhost/oomhero-rt-<Name>:<hash>
	Packages []string // Debian packages whose installed files go in
	// Skip drops package files under these prefixes (documentation, npm...).
	Skip []string
	// Paths are extra host files or directories (copied when they exist).
	Paths []string
	Files []File
	Dirs  []Dir
	// User, Entrypoint, Env, WorkDir: the image's configuration.
	User       string
	Entrypoint []string
	Env        []string
	WorkDir    string
}

// skipAlways are package paths no runtime needs.
var skipAlways = []string{"/usr/share/doc/", "/usr/share/man/", "/usr/share/lintian/", "/usr/share/bug/", "/usr/share/locale/", "/usr/share/info/"}

// baseFiles are the /etc files every image gets: the users the servers switch
// to, and name service files limited to local files.
func baseFiles() []File {
	return []File{
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/sh\n" +
			"www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n" +
			"postgres:x:101:101:PostgreSQL:/var/lib/postgresql:/bin/sh\n" +
			"redis:x:102:102:redis:/var/lib/redis:/usr/sbin/nologin\n" +
			"app:x:1000:1000:app:/tmp:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nwww-data:x:33:\npostgres:x:101:\nredis:x:102:\napp:x:1000:\nnogroup:x:65534:\n")},
		{Path: "/etc/nsswitch.conf", Mode: 0o644, Data: []byte("passwd: files\ngroup: files\nhosts: files\n")},
		{Path: "/etc/hosts", Mode: 0o644, Data: []byte("127.0.0.1 localhost\n")},
	}
}

// collected is the image content before it is written.
type collected struct {
	host  map[string]bool // host paths (files and symlinks)
	dirs  map[string]Dir
	files map[string]File
}

// PackageFiles returns the files (not directories) dpkg lists for pkg.
func PackageFiles(ctx context.Context, pkg string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "dpkg", "-L", pkg).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("dpkg -L %s: %w: %s (is the package installed? testenv/install-deps installs it)", pkg, err, bytes.TrimSpace(ee.Stderr))
		}
		return nil, fmt.Errorf("dpkg -L %s: %w", pkg, err)
	}
	var files []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(p, "/") {
			continue // "package diverts others to: ..."
		}
		fi, err := os.Stat(p) // "/bin" of merged /usr is a link to a directory
		if err != nil || fi.IsDir() {
			continue
		}
		files = append(files, p)
	}
	return files, nil
}

// lddLibs returns the shared objects (and the dynamic loader) that ldd
// names for the ELF file p, and the names it could not find (a plugin's
// dependency on its host library, e.g. HotSpot's libattach.so on
// libjvm.so, found at run time because the host loaded it).
func lddLibs(ctx context.Context, p string) (libs, missing []string, err error) {
	out, err := exec.CommandContext(ctx, "ldd", p).Output()
	if err != nil {
		// "not a dynamic executable": static, nothing to add.
		return nil, nil, nil
	}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if name, _, ok := strings.Cut(line, " => not found"); ok {
			missing = append(missing, strings.TrimSpace(name))
			continue
		}
		if _, after, ok := strings.Cut(line, "=> "); ok {
			line = after
		}
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "/") {
			libs = append(libs, f[0])
		}
	}
	return libs, missing, nil
}

func isELF(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// addHost adds host path p (following symlinks: both the link and what it
// points to go in) and its parent directories.
func (c *collected) addHost(p string) error {
	p = filepath.Clean(p) // ldd names "bin/../lib/libjli.so"
	for depth := 0; depth < 16; depth++ {
		if c.host[p] {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("image file %s: %w", p, err)
		}
		if fi.IsDir() {
			return nil // a link to a directory keeps only the link
		}
		// Parents that are symlinks (/lib -> usr/lib on merged /usr) go in
		// as symlinks; the file itself under its real directory.
		if err := c.addParents(filepath.Dir(p)); err != nil {
			return err
		}
		rd, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			return fmt.Errorf("image file %s: %w", p, err)
		}
		if rd != filepath.Dir(p) {
			if err := c.addParents(rd); err != nil {
				return err
			}
			p = filepath.Join(rd, filepath.Base(p))
			if c.host[p] {
				return nil
			}
			if fi, err = os.Lstat(p); err != nil {
				return fmt.Errorf("image file %s: %w", p, err)
			}
		}
		c.host[p] = true
		if fi.Mode()&fs.ModeSymlink == 0 {
			return nil
		}
		t, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("image file %s: %w", p, err)
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(p), t)
		}
		if _, err := os.Stat(t); err != nil {
			return nil // dangling on the host too (e.g. cacerts): keep the link
		}
		p = t
	}
	return fmt.Errorf("image file %s: too many symlinks", p)
}

func (c *collected) addParents(d string) error {
	for d != "/" && d != "." {
		fi, err := os.Lstat(d)
		if err != nil {
			return fmt.Errorf("image directory %s: %w", d, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			c.host[d] = true // the link only, not the directory it names
		}
		d = filepath.Dir(d)
	}
	return nil
}

// collect gathers the image content of s.
func (s ImageSpec) collect(ctx context.Context) (*collected, error) {
	c := &collected{host: map[string]bool{}, dirs: map[string]Dir{}, files: map[string]File{}}
	skip := append(slices.Clone(skipAlways), s.Skip...)
	var elfs []string
	for _, pkg := range s.Packages {
		files, err := PackageFiles(ctx, pkg)
		if err != nil {
			return nil, err
		}
	next:
		for _, f := range files {
			for _, pre := range skip {
				if strings.HasPrefix(f, pre) {
					continue next
				}
			}
			if err := c.addHost(f); err != nil {
				return nil, err
			}
			if fi, err := os.Lstat(f); err == nil && fi.Mode().IsRegular() && isELF(f) {
				elfs = append(elfs, f)
			}
		}
	}
	for _, p := range s.Paths {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		err := filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			return c.addHost(q)
		})
		if err != nil {
			return nil, err
		}
	}
	for _, f := range s.Files {
		if f.Host != "" && isELF(f.Host) {
			elfs = append(elfs, f.Host)
		}
	}
	missing := map[string]string{} // library -> who needs it
	for _, e := range elfs {
		libs, miss, err := lddLibs(ctx, e)
		if err != nil {
			return nil, err
		}
		for _, l := range libs {
			if err := c.addHost(l); err != nil {
				return nil, err
			}
		}
		for _, m := range miss {
			missing[m] = e
		}
	}
	have := map[string]bool{}
	for p := range c.host {
		have[filepath.Base(p)] = true
	}
	for m, who := range missing {
		if !have[m] {
			return nil, fmt.Errorf("ldd %s: %s not found, and no file of the image has that name", who, m)
		}
	}
	for _, f := range append(baseFiles(), s.Files...) {
		c.files[f.Path] = f
	}
	for _, d := range append([]Dir{{Path: "/tmp", Mode: 0o1777}, {Path: "/run", Mode: 0o755}, {Path: "/var/tmp", Mode: 0o1777}}, s.Dirs...) {
		c.dirs[d.Path] = d
	}
	return c, nil
}

// hash is a content hash of the image: the spec, and each host file's path,
// mode, size and modification time (a package upgrade changes them).
func (s ImageSpec) hash(c *collected) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "spec %q %q %q %q %q\n", s.Name, s.User, s.Entrypoint, s.Env, s.WorkDir)
	for _, p := range slices.Sorted(mapKeys(c.host)) {
		fi, err := os.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("image %s: %w", s.Name, err)
		}
		fmt.Fprintf(h, "host %s %v %d %d\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
	}
	for _, p := range slices.Sorted(mapKeys(c.files)) {
		f := c.files[p]
		fmt.Fprintf(h, "file %s %v\n", p, f.Mode)
		if f.Host != "" {
			b, err := os.ReadFile(f.Host)
			if err != nil {
				return "", fmt.Errorf("image %s: %w", s.Name, err)
			}
			h.Write(b)
		} else {
			h.Write(f.Data)
		}
	}
	for _, p := range slices.Sorted(mapKeys(c.dirs)) {
		fmt.Fprintf(h, "dir %+v\n", c.dirs[p])
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// writeTar writes the image's root file system as a tar archive.
func (c *collected) writeTar(w io.Writer) error {
	tw := &dupCheck{Writer: tar.NewWriter(w), seen: map[string]bool{}}
	seenDir := map[string]bool{}
	var mkdirs func(d string) error
	mkdirs = func(d string) error {
		if d == "/" || d == "." || seenDir[d] {
			return nil
		}
		if err := mkdirs(filepath.Dir(d)); err != nil {
			return err
		}
		seenDir[d] = true
		if c.host[d] { // a symlink written as such
			return nil
		}
		hd := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755}
		if dd, ok := c.dirs[d]; ok {
			hd.Mode, hd.Uid, hd.Gid = int64(dd.Mode.Perm()), dd.UID, dd.GID
			if dd.Mode&fs.ModeSticky != 0 {
				hd.Mode |= 0o1000
			}
		}
		return tw.WriteHeader(hd)
	}
	// Symlinked directories first (so /lib -> usr/lib exists before files
	// under /usr/lib are written through other names).
	paths := slices.Sorted(mapKeys(c.host))
	sort.SliceStable(paths, func(i, j int) bool { return strings.Count(paths[i], "/") < strings.Count(paths[j], "/") })
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if err := mkdirs(filepath.Dir(p)); err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "/")
		if fi.Mode()&fs.ModeSymlink != 0 {
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			seenDir[p] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: t, Mode: 0o777}); err != nil {
				return err
			}
			continue
		}
		hd, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hd.Name, hd.Uname, hd.Gname = name, "", ""
		if err := tw.WriteHeader(hd); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("image file %s: %w", p, err)
		}
	}
	for _, d := range slices.Sorted(mapKeys(c.dirs)) {
		if err := mkdirs(d); err != nil {
			return err
		}
	}
	for _, p := range slices.Sorted(mapKeys(c.files)) {
		f := c.files[p]
		if err := mkdirs(filepath.Dir(p)); err != nil {
			return err
		}
		data := f.Data
		if f.Host != "" {
			b, err := os.ReadFile(f.Host)
			if err != nil {
				return fmt.Errorf("image file %s from %s: %w", p, f.Host, err)
			}
			data = b
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: int64(mode.Perm()), Size: int64(len(data))}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// dupCheck refuses a second entry of the same name (podman import fails on
// it, without the name).
type dupCheck struct {
	*tar.Writer
	seen map[string]bool
}

func (d *dupCheck) WriteHeader(h *tar.Header) error {
	n := strings.TrimSuffix(h.Name, "/")
	if d.seen[n] {
		return fmt.Errorf("two entries for %s", h.Name)
	}
	d.seen[n] = true
	return d.Writer.WriteHeader(h)
}

// Build returns the tag of the image of s, importing it with `podman import`
// unless an image with the same content hash exists already. dir is a
// scratch directory for the tarball.
func (s ImageSpec) Build(ctx context.Context, lab *pods.Lab, dir string) (string, error) {
	c, err := s.collect(ctx)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", s.Name, err)
	}
	h, err := s.hash(c)
	if err != nil {
		return "", err
	}
	tag := "localhost/oomhero-rt-" + s.Name + ":" + h
	if lab.ImageExists(ctx, tag) {
		return tag, nil
	}
	tarPath := filepath.Join(dir, "rt-"+s.Name+".tar")
	f, err := os.Create(tarPath)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", s.Name, err)
	}
	defer os.Remove(tarPath)
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := c.writeTar(bw); err != nil {
		f.Close()
		return "", fmt.Errorf("image %s: write %s: %w", s.Name, tarPath, err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return "", fmt.Errorf("image %s: write %s: %w", s.Name, tarPath, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("image %s: write %s: %w", s.Name, tarPath, err)
	}
	args := []string{"import", "-q"}
	if len(s.Entrypoint) > 0 {
		args = append(args, "--change", "ENTRYPOINT "+jsonArray(s.Entrypoint))
	}
	if s.User != "" {
		args = append(args, "--change", "USER "+s.User)
	}
	if s.WorkDir != "" {
		args = append(args, "--change", "WORKDIR "+s.WorkDir)
	}
	for _, e := range append([]string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}, s.Env...) {
		args = append(args, "--change", "ENV "+e)
	}
	args = append(args, "--change", "LABEL oomhero-rt-hash="+h, tarPath, tag)
	if _, err := lab.Podman(ctx, args...); err != nil {
		return "", fmt.Errorf("image %s: %w", s.Name, err)
	}
	// Older builds of this image (other hashes) go; one still in use by a
	// running pod stays (podman refuses).
	repo := "localhost/oomhero-rt-" + s.Name
	if out, err := lab.Podman(ctx, "images", "--format", "{{.Repository}}:{{.Tag}}", repo); err == nil {
		for _, old := range strings.Fields(string(out)) {
			if strings.HasPrefix(old, repo+":") && old != tag {
				lab.Podman(ctx, "rmi", old)
			}
		}
	}
	return tag, nil
}

func jsonArray(ss []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, s := range ss {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", s)
	}
	b.WriteByte(']')
	return b.String()
}
