package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/watch"
)

// A container whose environment declares OOMHERO_NAME (its pod spec's
// container name) is called so once its init exec'ed into the application,
// and the name stays through later exec's of the main process.
func TestDeclaredName(t *testing.T) {
	proc := t.TempDir()
	status(t, proc, 10, 0)
	environ(t, proc, 10, "_LIBCONTAINER_INITPIPE=3")
	sc := &lockedScanner{groups: map[string]*discover.Group{
		"/a": {Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "runc:[2:INIT]"}}},
	}}
	res := fakeResolver{byPath: map[string]watch.Container{"/a": {ID: 1, Path: "/a", Limit: 1000, Version: watch.V1}}}
	h := startAgent(t, []string{"--rescan", "10ms"}, proc, sc, res, nil)
	// The runtime's init is not watched yet (its root and limit are not
	// the container's until it exec's).
	select {
	case tg := <-h.src.updated:
		t.Fatalf("runc init watched before its exec: %+v", tg)
	case <-time.After(100 * time.Millisecond):
	}
	environ(t, proc, 10, "OOMHERO_NAME=bloat")
	sc.set("/a", &discover.Group{Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "testapp"}}})
	<-h.src.updated
	waitLog := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(h.logs.String(), want); {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", want, h.logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLog(`msg="container named as declared" container=bloat was=testapp`)
	// Another exec of the main process: the declared name stays.
	sc.set("/a", &discover.Group{Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 10, Comm: "sh"}}})
	time.Sleep(100 * time.Millisecond)
	h.stop()
	if n := h.agent.byID[1].Name; n != "bloat" {
		t.Fatalf("name %q after another exec, want the declared bloat:\n%s", n, h.logs.String())
	}
}
