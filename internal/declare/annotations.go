package declare

import (
	"slices"
	"strings"

	"github.com/oomhero/oomhero/internal/config"
)

// Pod annotations (node mode). A pod may carry the declaration values for
// all its containers as annotations oomhero.dev/<name>, with the same
// syntax as the OOMHERO_* variables; a container's own environment wins
// over them, option by option (Merge).
const (
	// AnnotationPrefix starts every annotation oomhero reads.
	AnnotationPrefix = "oomhero.dev/"
	// WatchAnnotation opts a pod's containers in or out (node mode):
	// "true" (all of them), "false" (none, even under --opt-in all), or a
	// comma list of container names.
	WatchAnnotation = AnnotationPrefix + "watch"
)

// annotationVars maps each declaration annotation to its variable.
// OOMHERO (off) and OOMHERO_NAME have no annotation: oomhero.dev/watch
// opts in and out, and the API server names containers.
var annotationVars = []struct{ annotation, variable string }{
	{AnnotationPrefix + "warning", Warning},
	{AnnotationPrefix + "critical", Critical},
	{AnnotationPrefix + "warning-signal", WarningSignal},
	{AnnotationPrefix + "critical-signal", CriticalSignal},
	{AnnotationPrefix + "targets", Targets},
	{AnnotationPrefix + "notify-url", NotifyURL},
	{AnnotationPrefix + "repeat", Repeat},
	{AnnotationPrefix + "cooldown", Cooldown},
	{AnnotationPrefix + "dry-run", DryRun},
}

// Annotations lists the declaration annotations, in the order of Names.
func Annotations() []string {
	out := make([]string, len(annotationVars))
	for i, av := range annotationVars {
		out[i] = av.annotation
	}
	return out
}

// FromAnnotations returns the declaration a pod's annotations carry. Its Set
// entries and Errors name the annotations (oomhero.dev/warning=65), not the
// variables. Annotations oomhero does not know under oomhero.dev/ are an
// Error each (likely a typo), except oomhero.dev/watch, which is not a
// declaration (see Watch). Values are judged exactly as Parse judges the
// variables'.
func FromAnnotations(ann map[string]string) Declaration {
	var env []byte
	for _, av := range annotationVars {
		if v, ok := ann[av.annotation]; ok {
			env = append(env, av.variable+"="+strings.ReplaceAll(v, "\x00", " ")+"\x00"...)
		}
	}
	d := Parse(env)
	rename := func(variable string) string {
		for _, av := range annotationVars {
			if av.variable == variable {
				return av.annotation
			}
		}
		return variable
	}
	for i, s := range d.Set {
		name, v, _ := strings.Cut(s, "=")
		d.Set[i] = rename(name) + "=" + v
	}
	for i, e := range d.Errors {
		ce := *e
		ce.Name = rename(ce.Name)
		ce.Accepted = strings.ReplaceAll(ce.Accepted, Critical, rename(Critical))
		d.Errors[i] = &ce
	}
	var unknown []string
	for k := range ann {
		if strings.HasPrefix(k, AnnotationPrefix) && k != WatchAnnotation && !slices.ContainsFunc(annotationVars, func(av struct{ annotation, variable string }) bool { return av.annotation == k }) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown[:min(len(unknown), 8)] {
		d.Errors = append(d.Errors, &config.Error{Name: clip(k), Value: clip(ann[k]),
			Accepted: "an oomhero annotation: " + WatchAnnotation + ", " + strings.Join(Annotations(), ", ")})
	}
	return d
}

// Merge returns env's declaration completed by pod's (FromAnnotations):
// each option env declares is env's, the others are pod's. Set and Errors
// list both, env's first; a pod value env overrides is left out of Set.
func Merge(env, pod Declaration) Declaration {
	d := env
	d.Set = slices.Clone(env.Set)
	d.Errors = slices.Clone(env.Errors)
	took := func(annotation string) {
		for _, s := range pod.Set {
			if strings.HasPrefix(s, annotation+"=") {
				d.Set = append(d.Set, s)
			}
		}
	}
	if d.Warning == 0 && pod.Warning > 0 {
		d.Warning = pod.Warning
		took(AnnotationPrefix + "warning")
	}
	if d.Critical == 0 && pod.Critical > 0 {
		d.Critical = pod.Critical
		took(AnnotationPrefix + "critical")
	}
	if !d.WarningSignal.Declared && pod.WarningSignal.Declared {
		d.WarningSignal = pod.WarningSignal
		took(AnnotationPrefix + "warning-signal")
	}
	if !d.CriticalSignal.Declared && pod.CriticalSignal.Declared {
		d.CriticalSignal = pod.CriticalSignal
		took(AnnotationPrefix + "critical-signal")
	}
	if d.Targets == "" && pod.Targets != "" {
		d.Targets = pod.Targets
		took(AnnotationPrefix + "targets")
	}
	if d.NotifyURL == "" && pod.NotifyURL != "" {
		d.NotifyURL = pod.NotifyURL
		took(AnnotationPrefix + "notify-url")
	}
	if d.Repeat == "" && pod.Repeat != "" {
		d.Repeat = pod.Repeat
		took(AnnotationPrefix + "repeat")
	}
	if d.Cooldown == 0 && pod.Cooldown > 0 {
		d.Cooldown = pod.Cooldown
		took(AnnotationPrefix + "cooldown")
	}
	if d.DryRun == nil && pod.DryRun != nil {
		v := *pod.DryRun
		d.DryRun = &v
		took(AnnotationPrefix + "dry-run")
	}
	d.Errors = append(d.Errors, pod.Errors...)
	return d
}

// Watch is what a pod's oomhero.dev/watch annotation says of its container
// named container: opted in (in), opted out (out), or neither (no
// annotation, or a list that does not name it). A bad value (not true,
// false, nor a list of container names) is neither and is returned as an
// error for the log.
func Watch(ann map[string]string, container string) (in, out bool, err *config.Error) {
	v, ok := ann[WatchAnnotation]
	if !ok {
		return false, false, nil
	}
	v = strings.TrimSpace(v)
	switch strings.ToLower(v) {
	case "true":
		return true, false, nil
	case "false":
		return false, true, nil
	}
	names := strings.Split(v, ",")
	for i, n := range names {
		names[i] = strings.TrimSpace(n)
		if !isDNSLabel(names[i]) {
			return false, false, &config.Error{Name: WatchAnnotation, Value: clip(v),
				Accepted: "true, false, or a comma list of container names (DNS-1123 labels)"}
		}
	}
	return container != "" && slices.Contains(names, container), false, nil
}
