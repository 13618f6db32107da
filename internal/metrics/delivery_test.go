package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/watch"
)

func TestDeliveryCounters(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	m := New(Options{Pod: "p", NoProcessCollectors: true, Retain: time.Minute, Now: clk.now})
	m.Signal(tgt("java"), watch.Critical, ResultRefused)
	m.Signal(tgt("java"), watch.Critical, ResultRefused)
	m.Notification(tgt("java"), watch.Warning, "sent")
	m.Notification(tgt("java"), watch.Critical, "failed")
	m.Notification(tgt("java"), watch.Critical, "refused")
	m.Notification(tgt("java"), watch.Critical, "dry_run")
	got := scrape(t, m)
	want(t, got, "oomhero_signals_total{container=java,level=critical,namespace=,pod=p,result=refused}", 2)
	want(t, got, "oomhero_notifications_total{container=java,level=warning,namespace=,pod=p,result=sent}", 1)
	want(t, got, "oomhero_notifications_total{container=java,level=critical,namespace=,pod=p,result=failed}", 1)
	want(t, got, "oomhero_notifications_total{container=java,level=critical,namespace=,pod=p,result=refused}", 1)
	want(t, got, "oomhero_notifications_total{container=java,level=critical,namespace=,pod=p,result=dry_run}", 1)
	// Kept for Retain after the container is forgotten, then dropped.
	m.Forget(tgt("java"))
	got = scrape(t, m)
	want(t, got, "oomhero_notifications_total{container=java,level=warning,namespace=,pod=p,result=sent}", 1)
	clk.t = clk.t.Add(time.Minute)
	m.ScanDone()
	for k := range scrape(t, m) {
		if strings.Contains(k, "container=java") {
			t.Errorf("%s left after Retain", k)
		}
	}
}
