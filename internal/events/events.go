package events

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/oomhero/oomhero/internal/safename"
)

// ServiceAccountDir is where Kubernetes mounts the pod's service account
// token, CA and namespace.
const ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// ErrNotInCluster is returned by ConfigFromEnv when the process does not run
// in a Kubernetes pod (or lacks what it needs to reach the API server).
var ErrNotInCluster = errors.New("no in-cluster kubernetes configuration")

// Kind is the kind of an event.
type Kind int

// Kinds of events.
const (
	// Warning: a container crossed the warning threshold.
	Warning Kind = iota
	// Critical: a container crossed the critical threshold.
	Critical
	// OOMKill: the kernel OOM-killed a process of a container.
	OOMKill
)

// Reason returns the event's reason, as kubectl describe shows it.
func (k Kind) Reason() string {
	switch k {
	case Warning:
		return "MemoryWarning"
	case Critical:
		return "MemoryCritical"
	case OOMKill:
		return "OOMKilled"
	}
	return "Memory" + strconv.Itoa(int(k))
}

// Config configures a Recorder.
type Config struct {
	// Server is the API server's base URL, e.g. "https://10.96.0.1:443".
	Server string
	// TokenFile and CAFile are the service account's token and CA bundle.
	TokenFile, CAFile string
	// Namespace, Pod and PodUID name the pod the events are about.
	// PodUID may be empty: the recorder then asks the API server.
	Namespace, Pod, PodUID string
	// Node is the node name, reported as the event's source host (optional).
	Node string
	// AnyNamespace (the node agent): events are about the pods of every
	// namespace (EmitFor), so Run checks that the service account may
	// create events in all namespaces, not only in Namespace.
	AnyNamespace bool
	// Component is the event's source component; empty means "oomhero".
	Component string
	// MinInterval is the shortest time between two events of one container
	// and kind; 0 means 30 s.
	MinInterval time.Duration
	// Burst and Every shape the overall token bucket: at most Burst events
	// at once, then one per Every. 0 means 10 and 10 s.
	Burst int
	Every time.Duration
	// Logger receives the recorder's few log lines; nil means slog.Default.
	Logger *slog.Logger
	// Client overrides the HTTP client (tests); nil means one built from
	// CAFile.
	Client *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ConfigFromEnv builds the in-cluster Config from the environment (getenv,
// usually os.Getenv) and the service account directory saDir (usually
// ServiceAccountDir). It returns an error wrapping ErrNotInCluster that names
// what is missing.
func ConfigFromEnv(getenv func(string) string, saDir string) (Config, error) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return Config{}, fmt.Errorf("%w: KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT unset", ErrNotInCluster)
	}
	c := Config{
		Server:    "https://" + net.JoinHostPort(host, port),
		TokenFile: filepath.Join(saDir, "token"),
		CAFile:    filepath.Join(saDir, "ca.crt"),
		Namespace: getenv("POD_NAMESPACE"),
		Pod:       getenv("POD_NAME"),
		PodUID:    getenv("POD_UID"),
		Node:      getenv("NODE_NAME"),
	}
	for _, f := range []string{c.TokenFile, c.CAFile} {
		if _, err := os.Stat(f); err != nil {
			return Config{}, fmt.Errorf("%w: no service account credentials: %w", ErrNotInCluster, err)
		}
	}
	if c.Namespace == "" {
		b, err := os.ReadFile(filepath.Join(saDir, "namespace"))
		if err != nil {
			return Config{}, fmt.Errorf("%w: POD_NAMESPACE unset and %w", ErrNotInCluster, err)
		}
		c.Namespace = strings.TrimSpace(string(b))
	}
	if c.Pod == "" {
		return Config{}, fmt.Errorf("%w: POD_NAME unset (set it from the Downward API, fieldPath metadata.name)", ErrNotInCluster)
	}
	return c, nil
}

type event struct {
	kind      Kind
	pod       Pod // zero: the recorder's own pod (Config)
	container string
	message   string
	at        time.Time
}

// Pod names the pod an event is about (EmitFor).
type Pod struct {
	Namespace, Name, UID string
}

type keyState struct {
	last       time.Time
	suppressed int
}

// Recorder posts events. Create it with New, start Run, then call Emit from
// any goroutine.
type Recorder struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	queue  chan event

	on      atomic.Bool
	stopped atomic.Bool
	dropped atomic.Uint64 // queue full
	failed  atomic.Uint64 // the API server refused or did not answer

	// Owned by Run's goroutine.
	keys       map[string]*keyState
	tokens     float64
	tokensAt   time.Time
	lastErrLog time.Time

	mu sync.Mutex // guards posted
	// posted counts events the API server accepted, for tests and metrics.
	posted uint64
}

// New returns a Recorder for cfg. It does no I/O; Run checks permissions.
func New(cfg Config) *Recorder {
	if cfg.Component == "" {
		cfg.Component = "oomhero"
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 30 * time.Second
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 10
	}
	if cfg.Every <= 0 {
		cfg.Every = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Recorder{
		cfg:    cfg,
		log:    cfg.Logger,
		client: cfg.Client,
		queue:  make(chan event, 64),
		keys:   map[string]*keyState{},
		tokens: float64(cfg.Burst),
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r
}

// Enabled reports whether the recorder checked its permission and posts
// events.
func (r *Recorder) Enabled() bool { return r.on.Load() }

// Posted returns how many events the API server accepted.
func (r *Recorder) Posted() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posted
}

// Dropped returns how many events Emit dropped because the queue was full
// (the API server is slow or unreachable).
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

// Failed returns how many events were lost because the API server refused
// them (other than 401/403, which turn the recorder off) or did not answer
// within the request timeout.
func (r *Recorder) Failed() uint64 { return r.failed.Load() }

// MaxMessage is the longest event message posted, in bytes.
const MaxMessage = 1024

// Emit queues an event of kind k about container with a human message. It
// never blocks, however slow the API server: it drops the event (and counts
// it, see Dropped) when the queue is full, and drops it silently when the
// recorder is off. The container name goes through safename.Clean and the
// message through the same rules (up to MaxMessage bytes): a name a
// container chose cannot forge or break an event.
func (r *Recorder) Emit(k Kind, container, message string) {
	r.EmitFor(k, Pod{}, container, message)
}

// EmitFor is Emit for an event about pod p (the node agent: the watched
// container's own pod, kubectl describe pod shows it there). A zero Pod is
// the recorder's own pod. The pod's names are cleaned like the container's;
// an event about a pod without namespace or name is the recorder's own.
func (r *Recorder) EmitFor(k Kind, p Pod, container, message string) {
	if r.stopped.Load() {
		return
	}
	p = Pod{Namespace: safename.Clean(p.Namespace), Name: safename.Clean(p.Name), UID: safename.Clean(p.UID)}
	if p.Namespace == "" || p.Name == "" {
		p = Pod{}
	}
	ev := event{kind: k, pod: p, container: safename.Clean(container), message: cleanText(message, MaxMessage), at: r.cfg.Now()}
	select {
	case r.queue <- ev:
	default:
		r.dropped.Add(1)
	}
}

// Run checks whether the service account may create events, then posts the
// queued events until ctx ends. It returns nil when ctx ends; when events
// cannot be posted it logs why once and returns nil at once (the recorder is
// then off and Emit drops everything).
func (r *Recorder) Run(ctx context.Context) error {
	defer r.stopped.Store(true)
	if r.client == nil {
		c, err := inClusterClient(r.cfg.CAFile)
		if err != nil {
			r.off("read service account CA", err)
			return nil
		}
		r.client = c
	}
	if !r.checkAccess(ctx) {
		return nil
	}
	if r.cfg.PodUID == "" {
		uid, err := r.podUID(ctx)
		if err != nil {
			r.log.Warn("kubernetes events lack the pod uid: kubectl describe pod will not list them; set POD_UID from the Downward API (fieldPath metadata.uid)", "err", err)
		}
		r.cfg.PodUID = uid
	}
	r.on.Store(true)
	r.log.Info("kubernetes events on", "namespace", r.cfg.Namespace, "pod", r.cfg.Pod)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-r.queue:
			if !r.post(ctx, ev) {
				return nil
			}
		}
	}
}

func (r *Recorder) off(what string, err error) {
	r.on.Store(false)
	r.stopped.Store(true)
	r.log.Info("kubernetes events off", "reason", fmt.Sprintf("%s: %v", what, err))
}

// checkAccess asks the API server whether the service account may create
// events, retrying connection errors for about a minute.
func (r *Recorder) checkAccess(ctx context.Context) bool {
	body := map[string]any{
		"apiVersion": "authorization.k8s.io/v1",
		"kind":       "SelfSubjectAccessReview",
		"spec": map[string]any{"resourceAttributes": map[string]string{
			"namespace": r.accessNamespace(), "verb": "create", "resource": "events",
		}},
	}
	var err error
	for attempt := 0; attempt < 12; attempt++ {
		var resp struct {
			Status struct {
				Allowed bool   `json:"allowed"`
				Reason  string `json:"reason"`
			} `json:"status"`
		}
		err = r.do(ctx, http.MethodPost, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body, &resp)
		if err == nil {
			if !resp.Status.Allowed {
				reason := "the service account may not create events in namespace " + r.cfg.Namespace
				if r.cfg.AnyNamespace {
					reason = "the service account may not create events in all namespaces (a ClusterRole with events create is needed)"
				}
				if resp.Status.Reason != "" {
					reason += " (" + resp.Status.Reason + ")"
				}
				r.off("access review", errors.New(reason))
				return false
			}
			return true
		}
		var se *statusError
		if errors.As(err, &se) && se.code != http.StatusTooManyRequests && se.code < 500 {
			break
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Second):
		}
	}
	r.off("access review", err)
	return false
}

// accessNamespace is the namespace of the access review: "" (all) for the
// node agent.
func (r *Recorder) accessNamespace() string {
	if r.cfg.AnyNamespace {
		return ""
	}
	return r.cfg.Namespace
}

func (r *Recorder) podUID(ctx context.Context) (string, error) {
	var pod struct {
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
	}
	p := "/api/v1/namespaces/" + url.PathEscape(r.cfg.Namespace) + "/pods/" + url.PathEscape(r.cfg.Pod)
	if err := r.do(ctx, http.MethodGet, p, nil, &pod); err != nil {
		return "", fmt.Errorf("get pod %s/%s: %w", r.cfg.Namespace, r.cfg.Pod, err)
	}
	return pod.Metadata.UID, nil
}

// admit applies the per-key interval and the overall token bucket. It
// returns how many events of the key were suppressed before this one, and
// false when this one must be suppressed too.
func (r *Recorder) admit(ev event) (int, bool) {
	key := ev.pod.Namespace + "\x00" + ev.pod.Name + "\x00" + ev.container + "\x00" + ev.kind.Reason()
	ks := r.keys[key]
	if ks == nil {
		ks = &keyState{}
		r.keys[key] = ks
	}
	if !ks.last.IsZero() && ev.at.Sub(ks.last) < r.cfg.MinInterval {
		ks.suppressed++
		return 0, false
	}
	if !r.tokensAt.IsZero() {
		r.tokens += float64(ev.at.Sub(r.tokensAt)) / float64(r.cfg.Every)
		if r.tokens > float64(r.cfg.Burst) {
			r.tokens = float64(r.cfg.Burst)
		}
	}
	r.tokensAt = ev.at
	if r.tokens < 1 {
		ks.suppressed++
		return 0, false
	}
	r.tokens--
	n := ks.suppressed
	ks.suppressed = 0
	ks.last = ev.at
	return n, true
}

// post sends one event; it returns false when the recorder must stop (the
// API server forbids events).
func (r *Recorder) post(ctx context.Context, ev event) bool {
	suppressed, ok := r.admit(ev)
	if !ok {
		return true
	}
	msg := ev.message
	if ev.container != "" {
		msg = "container " + ev.container + ": " + msg
	}
	switch {
	case suppressed == 1:
		msg += " (1 similar event suppressed)"
	case suppressed > 1:
		msg += fmt.Sprintf(" (%d similar events suppressed)", suppressed)
	}
	ts := ev.at.UTC().Format(time.RFC3339)
	about := ev.pod
	if about.Name == "" {
		about = Pod{Namespace: r.cfg.Namespace, Name: r.cfg.Pod, UID: r.cfg.PodUID}
	}
	obj := map[string]any{
		"apiVersion": "v1",
		"kind":       "Event",
		"metadata": map[string]any{
			"name":      fmt.Sprintf("%s.%x", about.Name, ev.at.UnixNano()),
			"namespace": about.Namespace,
		},
		"involvedObject": map[string]any{
			"apiVersion": "v1",
			"kind":       "Pod",
			"namespace":  about.Namespace,
			"name":       about.Name,
			"uid":        about.UID,
		},
		"reason":             ev.kind.Reason(),
		"message":            msg,
		"type":               "Warning",
		"source":             map[string]any{"component": r.cfg.Component, "host": r.cfg.Node},
		"firstTimestamp":     ts,
		"lastTimestamp":      ts,
		"count":              1,
		"reportingComponent": r.cfg.Component,
		"reportingInstance":  r.cfg.Pod,
	}
	err := r.do(ctx, http.MethodPost, "/api/v1/namespaces/"+url.PathEscape(about.Namespace)+"/events", obj, nil)
	if err == nil {
		r.mu.Lock()
		r.posted++
		r.mu.Unlock()
		return true
	}
	var se *statusError
	if errors.As(err, &se) && (se.code == http.StatusForbidden || se.code == http.StatusUnauthorized) {
		r.off("post event", err)
		return false
	}
	r.failed.Add(1)
	if now := r.cfg.Now(); now.Sub(r.lastErrLog) >= time.Minute {
		r.lastErrLog = now
		r.log.Warn("kubernetes event not posted", "reason", ev.kind.Reason(), "container", ev.container, "err", err)
	}
	return true
}

// statusError is a non-2xx answer of the API server.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("api server answered %d: %s", e.code, e.msg)
}

func (r *Recorder) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	tok, err := os.ReadFile(r.cfg.TokenFile)
	if err != nil {
		return fmt.Errorf("read service account token: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(r.cfg.Server, "/")+path, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", r.cfg.Component)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var st struct {
			Message string `json:"message"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &st) == nil && st.Message != "" {
			msg = st.Message
		}
		return fmt.Errorf("%s %s: %w", method, path, &statusError{code: resp.StatusCode, msg: msg})
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

func inClusterClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %q", caFile)
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        1,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}, nil
}

// cleanText is safename.Clean for free text: invalid UTF-8 and non-printing
// characters become '?', and the text is cut to limit bytes at a rune
// boundary ("..." appended).
func cleanText(s string, limit int) string {
	if len(s) <= safename.MaxLen {
		return safename.Clean(s)
	}
	var b strings.Builder
	b.Grow(min(len(s), limit+3))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || !unicode.IsPrint(r) {
			r = '?'
		}
		if b.Len()+utf8.RuneLen(r) > limit {
			b.WriteString("...")
			break
		}
		b.WriteRune(r)
		i += max(n, 1)
	}
	return b.String()
}
