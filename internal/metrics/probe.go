package metrics

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The health socket: /healthz and /readyz over a unix socket in oomhero's
// own filesystem, for exec probes (oomhero probe). The containers of a pod
// share one network namespace, so any of them can take oomhero's TCP port
// before it does and answer kubelet's httpGet probes in its place (200: a
// stuck oomhero is never restarted; an error: a working one is restarted
// in a loop). A socket file in a directory only oomhero's container mounts
// (an emptyDir) is out of their reach. Abstract unix sockets would not be:
// they belong to the network namespace too.

// ServeUnix serves Handler on a unix socket at path until ctx ends. It
// replaces a socket left by an earlier run (not any other kind of file) and
// makes the socket 0600. It returns nil when ctx ends, an error naming path
// when it cannot listen.
func (m *Metrics) ServeUnix(ctx context.Context, path string) error {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return fmt.Errorf("health socket %q: exists and is not a socket (%s)", path, fi.Mode().Type())
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("health socket %q: remove the old socket: %w", path, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("health socket %q: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("health socket %q: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	// Other containers do not see the directory at all; 0600 keeps other
	// users of oomhero's own container out too. (Not umask: it is
	// process-wide.)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("health socket %q: %w", path, err)
	}
	return m.Serve(ctx, ln)
}

// Probe asks the oomhero serving the health socket at socket for urlPath
// ("/healthz" or "/readyz") and returns nil when it answers 200, an error
// with its answer or why it could not be asked otherwise. It gives up after
// timeout.
func Probe(socket, urlPath string, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.Dial("unix", socket)
	if err != nil {
		return fmt.Errorf("health socket %q: %w", socket, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	req, err := http.NewRequest(http.MethodGet, "http://oomhero"+urlPath, nil)
	if err != nil {
		return err
	}
	req.Close = true
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("health socket %q: %w", socket, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return fmt.Errorf("health socket %q: %w", socket, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if msg == "" {
			msg = resp.Status
		}
		return errors.New(msg)
	}
	return nil
}
