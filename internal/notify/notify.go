// Package notify is oomhero's HTTP channel: for runtimes where a signal is
// the wrong tool (a JVM, Node.js), the application declares a URL and
// oomhero POSTs a small JSON document to it on every decision that would
// send a signal.
//
// Delivery never delays signals or other containers: each container has
// one worker goroutine and a mailbox of one notification, and a newer
// notification replaces one not yet sent (newest wins). A POST has a short
// timeout (2 s); a 2xx answer is "sent", anything else "failed". Only
// http:// URLs whose host is a loopback address or "localhost" are used
// (the pod shares one network namespace, so the application listens on
// 127.0.0.1), unless Options.Remote is set; the dialer checks the address
// it connects to as well, so a name that resolves elsewhere is refused too.
// Redirects are not followed and no proxy is used.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Outcomes of one notification (the result label of
// oomhero_notifications_total).
const (
	Sent    = "sent"
	Failed  = "failed"
	Refused = "refused"
	DryRun  = "dry_run"
)

// Timeout is the default time a POST may take, connection included.
const Timeout = 2 * time.Second

// Payload is the JSON body of a notification.
type Payload struct {
	Container       string  `json:"container"`
	Level           string  `json:"level"`
	PreviousLevel   string  `json:"previous_level"`
	Percent         float64 `json:"percent"`
	WorkingSetBytes uint64  `json:"working_set_bytes"`
	UsageBytes      uint64  `json:"usage_bytes"`
	LimitBytes      uint64  `json:"limit_bytes"`
	// Pressure figures (PSI avg10, percent), omitted where the cgroup has no PSI.
	PressureSomeAvg10 *float64  `json:"pressure_some_avg10,omitempty"`
	PressureFullAvg10 *float64  `json:"pressure_full_avg10,omitempty"`
	Time              time.Time `json:"time"`
}

// Result is what became of one notification.
type Result struct {
	Key       uint64 // the caller's key (the container's cgroup id)
	Container string
	Level     string
	URL       string
	Outcome   string // Sent, Failed, Refused or DryRun
	Status    int    // HTTP status, when an answer came
	Err       error  // why it failed or was refused
	Took      time.Duration
	// Superseded counts older notifications this one replaced unsent.
	Superseded int
}

// Options configures a Notifier.
type Options struct {
	// UserAgent is sent as User-Agent ("oomhero/<version>").
	UserAgent string
	// Timeout of one POST; 0 means Timeout.
	Timeout time.Duration
	// Remote allows URLs whose host is not a loopback address.
	Remote bool
	// DryRun reports DryRun instead of posting.
	DryRun bool
}

// ErrRefused wraps the reason a URL is not used.
var ErrRefused = errors.New("notification URL refused")

// Check tells whether url may be used: http:// with a loopback host
// (127.0.0.0/8, ::1, "localhost"), or, with remote, any http:// or
// https:// URL with a host.
func Check(raw string, remote bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if u.User != nil {
		return fmt.Errorf("%w: credentials in the URL", ErrRefused)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%w: no host", ErrRefused)
	}
	if remote {
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("%w: scheme %q (http or https)", ErrRefused, u.Scheme)
		}
		return nil
	}
	if u.Scheme != "http" {
		return fmt.Errorf("%w: scheme %q: only http:// to a loopback address (the pod's own network namespace) unless --notify-remote", ErrRefused, u.Scheme)
	}
	if !loopbackHost(u.Hostname()) {
		return fmt.Errorf("%w: host %q is not a loopback address (127.0.0.0/8, ::1, localhost); set --notify-remote to allow it", ErrRefused, u.Hostname())
	}
	return nil
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Unmap().IsLoopback()
}

// Notifier posts notifications, one worker per key. It is safe for
// concurrent use.
type Notifier struct {
	opts    Options
	client  *http.Client
	results chan Result
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	workers map[uint64]*worker
	closed  bool
}

type job struct {
	url string
	p   Payload
}

type worker struct {
	mu         sync.Mutex
	pending    *job
	superseded int
	wake       chan struct{}
	stop       chan struct{}
}

// New returns a Notifier. Results come on Results(); the caller must keep
// reading them until Close.
func New(o Options) *Notifier {
	if o.Timeout <= 0 {
		o.Timeout = Timeout
	}
	if o.UserAgent == "" {
		o.UserAgent = "oomhero"
	}
	dialer := &net.Dialer{Timeout: o.Timeout}
	if !o.Remote {
		dialer.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !ap.Addr().Unmap().IsLoopback() {
				return fmt.Errorf("%w: %s is not a loopback address", ErrRefused, address)
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: o.Timeout,
		DisableCompression:    true,
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Notifier{
		opts: o,
		client: &http.Client{Transport: tr, Timeout: o.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		results: make(chan Result, 64),
		ctx:     ctx, cancel: cancel,
		workers: map[uint64]*worker{},
	}
}

// Results delivers the outcome of every notification.
func (n *Notifier) Results() <-chan Result { return n.results }

// Notify queues p for url under key and returns at once. A URL that Check
// refuses is reported as Refused without a request. A notification still
// queued for key is replaced.
func (n *Notifier) Notify(key uint64, url string, p Payload) {
	if err := Check(url, n.opts.Remote); err != nil {
		n.report(Result{Key: key, Container: p.Container, Level: p.Level, URL: url, Outcome: Refused, Err: err})
		return
	}
	if n.opts.DryRun {
		n.report(Result{Key: key, Container: p.Container, Level: p.Level, URL: url, Outcome: DryRun})
		return
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	w := n.workers[key]
	if w == nil {
		w = &worker{wake: make(chan struct{}, 1), stop: make(chan struct{})}
		n.workers[key] = w
		n.wg.Add(1)
		go n.run(key, w)
	}
	n.mu.Unlock()
	w.mu.Lock()
	if w.pending != nil {
		w.superseded++
	}
	w.pending = &job{url: url, p: p}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Forget stops key's worker (its container is gone); a POST in flight is
// cancelled.
func (n *Notifier) Forget(key uint64) {
	n.mu.Lock()
	w := n.workers[key]
	delete(n.workers, key)
	n.mu.Unlock()
	if w != nil {
		close(w.stop)
	}
}

// Close stops every worker and waits for them.
func (n *Notifier) Close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()
	n.client.CloseIdleConnections()
}

func (n *Notifier) report(r Result) {
	select {
	case n.results <- r:
	case <-n.ctx.Done():
	}
}

func (n *Notifier) run(key uint64, w *worker) {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-w.stop:
			return
		case <-w.wake:
		}
		w.mu.Lock()
		j, sup := w.pending, w.superseded
		w.pending, w.superseded = nil, 0
		w.mu.Unlock()
		if j == nil {
			continue
		}
		// Forget cancels a POST in flight.
		ctx, cancel := context.WithCancel(n.ctx)
		go func() {
			select {
			case <-w.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		r := n.post(ctx, j)
		cancel()
		r.Key, r.Superseded = key, sup
		n.report(r)
	}
}

func (n *Notifier) post(ctx context.Context, j *job) Result {
	r := Result{Container: j.p.Container, Level: j.p.Level, URL: j.url}
	body, err := json.Marshal(j.p)
	if err != nil {
		r.Outcome, r.Err = Failed, err
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.url, bytes.NewReader(body))
	if err != nil {
		r.Outcome, r.Err = Failed, err
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", n.opts.UserAgent)
	start := time.Now()
	resp, err := n.client.Do(req)
	r.Took = time.Since(start)
	if err != nil {
		r.Outcome, r.Err = Failed, err
		if errors.Is(err, ErrRefused) {
			r.Outcome = Refused
		}
		return r
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	r.Status = resp.StatusCode
	if resp.StatusCode/100 != 2 {
		r.Outcome, r.Err = Failed, fmt.Errorf("HTTP status %s", resp.Status)
		return r
	}
	r.Outcome = Sent
	return r
}
