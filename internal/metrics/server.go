package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler returns the HTTP handler serving /healthz, /readyz and /metrics.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if why := m.Stalled(); why != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("stalled: " + why + "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch {
		case !m.scanned.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: first scan not finished\n"))
		case !m.sourceSet.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: no memory source active\n"))
		default:
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	}))
	return mux
}

// ListenAndServe listens on addr ("host:port", ":9090") and serves Handler
// until ctx ends; then it shuts the server down (waiting up to 2 s for
// requests in flight) and returns nil. A listen error is returned at once.
func (m *Metrics) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %q: %w", addr, err)
	}
	return m.Serve(ctx, ln)
}

// Serve serves Handler on ln until ctx ends, like ListenAndServe. It closes
// ln.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
	ln = limitListener(ln, MaxConns)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shut down http server: %w", err)
	}
	return nil
}

// Retry backs off between two attempts of ServeRetrying.
type Retry struct {
	// First and Max bound the wait between attempts: it starts at First and
	// doubles up to Max. 0 means 1 s and 30 s.
	First, Max time.Duration
	// Failed, when not nil, is told of every failed attempt and of the
	// wait before the next one.
	Failed func(err error, retryIn time.Duration)
	// Listening, when not nil, is told the address once the port is bound.
	Listening func(addr net.Addr)
}

// ServeRetrying serves Handler on addr until ctx ends, like ListenAndServe,
// but never gives up: when the port is taken (another process of the pod
// holds it) or the server fails, it reports the error through r.Failed and
// tries again after a back-off. The rest of oomhero does not depend on
// HTTP: readings and signals go on meanwhile. It returns nil when ctx ends.
func (m *Metrics) ServeRetrying(ctx context.Context, addr string, r Retry) error {
	if r.First <= 0 {
		r.First = time.Second
	}
	if r.Max <= 0 {
		r.Max = 30 * time.Second
	}
	wait := r.First
	for {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err == nil {
			if r.Listening != nil {
				r.Listening(ln.Addr())
			}
			err = m.Serve(ctx, ln)
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				err = errors.New("http server stopped")
			}
			wait = r.First // it served: start the back-off again
		} else {
			err = fmt.Errorf("listen on %q: %w", addr, err)
		}
		if ctx.Err() != nil {
			return nil
		}
		if r.Failed != nil {
			r.Failed(err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, r.Max)
	}
}

// MaxConns bounds the connections Serve handles at once. Every container of
// the pod can reach the port; one that opens thousands of connections must
// not grow oomhero past its memory limit. Connections beyond it wait in the
// kernel's backlog: scrapes may then fail, oomhero goes on.
const MaxConns = 16

// limitListener accepts at most n connections open at once.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limited{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limited struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limited) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limited) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
