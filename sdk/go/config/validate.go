package config

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The bounds Gofer holds configs to; the same as the Rust SDK's and the server's.
const (
	MaxIdentifierLen  = 64
	MaxNameLen        = 256
	MaxDescriptionLen = 8192
	MaxObjectKeyLen   = 128
	MaxRetries        = 10
	MaxJudgedRuns     = 1000
	MaxBakeSeconds    = 7 * 24 * 3600
	MaxSteps          = 10
	MinCPUMillicores  = 10
	MaxCPUMillicores  = 1024 * 1000
	MinMemoryBytes    = 6 * MiB
	MaxMemoryBytes    = 16 * 1024 * GiB
	MaxVolumes        = 16
	MaxPathLen        = 4096
)

func errorf(format string, args ...interface{}) error {
	return &ConfigError{fmt.Sprintf(format, args...)}
}

// ValidateIdentifier checks the identifier rule shared by namespaces, pipelines and tasks: 1 to 64 characters of
// ASCII letters, digits, '-' and '_', starting with a letter or a digit.
func ValidateIdentifier(what, value string) error {
	invalid := func(reason string) error { return errorf("invalid %s '%s': %s", what, value, reason) }
	if value == "" {
		return invalid("it must not be empty")
	}
	if len(value) > MaxIdentifierLen {
		return invalid(fmt.Sprintf("it is longer than %d characters", MaxIdentifierLen))
	}
	if !isASCIIAlphanumeric(rune(value[0])) {
		return invalid("it must start with a letter or a digit")
	}
	for _, c := range value {
		if !(isASCIIAlphanumeric(c) || c == '-' || c == '_') {
			return invalid(fmt.Sprintf("it contains '%c'; only ASCII letters, digits, '-' and '_' are allowed", c))
		}
	}
	return nil
}

// ValidateText checks free text a person gives (a name, a description): at most max characters, and no control
// characters but line breaks and tabs (which only descriptions may hold).
func ValidateText(what, value string, max int) error {
	if length := utf8.RuneCountInString(value); length > max {
		return errorf("invalid %s: it is %d characters long; the most is %d", what, length, max)
	}
	multiline := max > MaxNameLen
	for _, c := range value {
		if unicode.IsControl(c) && !(multiline && (c == '\n' || c == '\r' || c == '\t')) {
			return errorf("invalid %s: it contains the control character %s", what, charDebug(c))
		}
	}
	return nil
}

// Validate checks everything the server will check: identifiers, names, images, variables and references,
// duplicate task ids, unknown dependencies, cycles, subscriptions and the deploy strategy.
func (p *Pipeline) Validate() error {
	if err := ValidateIdentifier("pipeline id", p.ID); err != nil {
		return err
	}
	if err := ValidateText("pipeline name", p.Name, MaxNameLen); err != nil {
		return err
	}
	if p.Description != nil {
		if err := ValidateText("pipeline description", *p.Description, MaxDescriptionLen); err != nil {
			return err
		}
	}
	invalid := func(field, reason string) error { return errorf("invalid pipeline %s: %s", field, reason) }
	if p.Parallelism < 0 {
		return invalid("parallelism",
			fmt.Sprintf("%d is negative; use 0 for the server's limit or a positive number", p.Parallelism))
	}
	if p.KeepFailedSeconds != nil && *p.KeepFailedSeconds == 0 {
		return invalid("keep_failed_seconds", "it must be at least one second; leave it out to keep nothing")
	}
	if p.TimeoutSeconds != nil && *p.TimeoutSeconds == 0 {
		return invalid("timeout", "it must be at least one second")
	}
	if len(p.Tasks) == 0 {
		return invalid("tasks", "a pipeline needs at least one task")
	}
	for i := range p.Tasks {
		if err := p.Tasks[i].validate(); err != nil {
			return err
		}
	}
	declared := map[[2]string]bool{}
	for _, subscription := range p.Subscriptions {
		if err := ValidateIdentifier("subscription extension", subscription.Extension); err != nil {
			return err
		}
		if err := ValidateIdentifier("subscription label", subscription.Label); err != nil {
			return err
		}
		key := [2]string{subscription.Extension, subscription.Label}
		if declared[key] {
			return invalid("subscriptions", fmt.Sprintf(
				"'%s' is declared twice for extension '%s'; labels must be unique per extension",
				subscription.Label, subscription.Extension))
		}
		declared[key] = true
	}
	if p.DeployStrategy != nil {
		if err := p.DeployStrategy.Validate(); err != nil {
			return err
		}
	}
	return checkGraph(p.Tasks)
}

func (t *Task) validate() error {
	if err := ValidateIdentifier("task id", t.ID); err != nil {
		return err
	}
	if t.Description != nil {
		what := fmt.Sprintf("description of task '%s'", t.ID)
		if err := ValidateText(what, *t.Description, MaxDescriptionLen); err != nil {
			return err
		}
	}
	invalid := func(field, reason string) error { return errorf("task '%s': invalid %s: %s", t.ID, field, reason) }
	if strings.TrimSpace(t.Image) == "" {
		return invalid("image", "it must not be empty; name a container image such as busybox:latest")
	}
	if strings.IndexFunc(t.Image, unicode.IsSpace) >= 0 {
		return invalid("image", fmt.Sprintf("'%s' contains whitespace", t.Image))
	}
	for _, key := range sortedKeys(t.Variables) {
		value := t.Variables[key]
		if key == "" {
			return invalid("variables", "a variable has an empty name")
		}
		if strings.ContainsAny(key, "=\x00") {
			return invalid("variables", fmt.Sprintf("variable name '%s' contains '=' or a NUL byte", key))
		}
		if strings.Contains(value, "\x00") {
			return invalid("variables", fmt.Sprintf("the value of %s contains a NUL byte", key))
		}
		if problem := checkReference(value); problem != "" {
			return invalid("variables", fmt.Sprintf("%s: %s", key, problem))
		}
	}
	if auth := t.RegistryAuth; auth != nil {
		if auth.User == "" {
			return invalid("registry_auth", "the user is empty")
		}
		if problem := checkReference(auth.Pass); problem != "" {
			return invalid("registry_auth", problem)
		}
		if kind, _, ok := parseReference(auth.Pass); ok && (kind == "pipeline_object" || kind == "run_object") {
			return invalid("registry_auth", "the password may name a secret, not an object")
		}
	}
	for _, list := range []struct {
		field string
		args  []string
	}{{"entrypoint", t.Entrypoint}, {"command", t.Command}} {
		for _, arg := range list.args {
			if strings.Contains(arg, "\x00") {
				return invalid(list.field, "an argument contains a NUL byte")
			}
		}
	}
	if t.TimeoutSeconds != nil && *t.TimeoutSeconds == 0 {
		return invalid("timeout", "it must be at least one second")
	}
	if t.Retries > MaxRetries {
		return invalid("retries", fmt.Sprintf("%d is more than the maximum of %d", t.Retries, MaxRetries))
	}
	if err := t.validateResources(invalid); err != nil {
		return err
	}
	if _, self := t.DependsOn[t.ID]; self {
		return cycleError([]string{t.ID, t.ID})
	}
	parents := make([]string, 0, len(t.DependsOn))
	for parent := range t.DependsOn {
		parents = append(parents, parent)
	}
	sort.Strings(parents)
	for _, parent := range parents {
		switch status := t.DependsOn[parent]; status {
		case RequiredParentStatusUnknown, RequiredParentStatusAny, RequiredParentStatusSuccess, RequiredParentStatusFailure:
		default:
			return errorf("'%s' is not a required parent status; use Any, Success or Failure", string(status))
		}
	}
	return nil
}

var referenceKinds = []string{"pipeline_secret", "global_secret", "pipeline_object", "run_object"}

// parseReference is the reference a value is, if it is one: its kind (lower case) and key.
func parseReference(value string) (kind, key string, ok bool) {
	before, rest, found := strings.Cut(strings.TrimSpace(value), "{{")
	if !found || !strings.HasSuffix(rest, "}}") {
		return "", "", false
	}
	key = strings.TrimSpace(strings.TrimSuffix(rest, "}}"))
	kind = asciiLower(before)
	for _, known := range referenceKinds {
		if kind == known {
			return kind, key, true
		}
	}
	return "", "", false
}

// checkReference says what is wrong with a value that is, or starts like, a reference; "" when nothing is.
func checkReference(value string) string {
	if kind, key, ok := parseReference(value); ok {
		if kind == "pipeline_secret" || kind == "global_secret" {
			if err := ValidateIdentifier("secret key", key); err != nil {
				return err.Error()
			}
			return ""
		}
		return validateObjectKey(key)
	}
	lowered := asciiLower(strings.TrimLeftFunc(value, unicode.IsSpace))
	for _, kind := range referenceKinds {
		if strings.HasPrefix(lowered, kind+"{{") {
			return fmt.Sprintf("'%s' starts like a %s reference but is not one: write %s{{KEY}} as the whole value",
				value, kind, kind)
		}
	}
	return ""
}

func validateObjectKey(key string) string {
	problem := ""
	switch {
	case key == "":
		problem = "it is empty"
	case len(key) > MaxObjectKeyLen:
		problem = fmt.Sprintf("it is longer than %d characters", MaxObjectKeyLen)
	case strings.Trim(key, ".") == "":
		problem = "it is only dots"
	default:
		for _, c := range key {
			if !(isASCIIAlphanumeric(c) || c == '.' || c == '-' || c == '_') {
				problem = fmt.Sprintf("it contains %s; use letters, digits, '.', '-' and '_'", charDebug(c))
				break
			}
		}
	}
	if problem == "" {
		return ""
	}
	return fmt.Sprintf("invalid object key '%s': %s", key, problem)
}

// Validate checks a deploy strategy's settings.
func (s *Strategy) Validate() error {
	invalid := func(field, reason string) error { return errorf("invalid pipeline %s: %s", field, reason) }
	switch s.Kind {
	case "immediate":
		return nil
	case "blue_green":
		if s.VerifyRuns == 0 || s.VerifyRuns > MaxJudgedRuns {
			return invalid("deploy strategy verify_runs",
				fmt.Sprintf("%d is out of range; give 1 to %d", s.VerifyRuns, MaxJudgedRuns))
		}
		for _, key := range sortedKeys(s.Variables) {
			if key == "" || strings.ContainsAny(key, "=\x00") {
				return invalid("deploy strategy variables",
					fmt.Sprintf("variable name '%s' must be non-empty and contain no '=' or NUL", key))
			}
		}
		return nil
	case "canary":
		if len(s.Steps) == 0 || len(s.Steps) > MaxSteps {
			return invalid("deploy strategy steps",
				fmt.Sprintf("%d stages given; give 1 to %d weights", len(s.Steps), MaxSteps))
		}
		for i, weight := range s.Steps {
			if weight <= 0 || weight > 100 {
				return invalid("deploy strategy weight",
					fmt.Sprintf("%d is not a percentage of runs; give 1 to 100", weight))
			}
			if i > 0 && weight <= s.Steps[i-1] {
				return invalid("deploy strategy steps",
					fmt.Sprintf("%s does not rise; each stage must take more runs than the one before",
						intList(s.Steps)))
			}
		}
		if s.MinRuns == 0 || s.MinRuns > MaxJudgedRuns {
			return invalid("deploy strategy min_runs",
				fmt.Sprintf("%d is out of range; give 1 to %d", s.MinRuns, MaxJudgedRuns))
		}
		if !(s.SuccessThreshold > 0 && s.SuccessThreshold <= 1) {
			return invalid("deploy strategy success_threshold", fmt.Sprintf(
				"%s is not a share of runs; give a number above 0 and at most 1, e.g. 0.9",
				rustDisplay(s.SuccessThreshold)))
		}
		if s.BakeSeconds > MaxBakeSeconds {
			return invalid("deploy strategy bake_seconds",
				fmt.Sprintf("%d is longer than a week (%d)", s.BakeSeconds, MaxBakeSeconds))
		}
		return nil
	default:
		return errorf("unknown deploy strategy kind '%s'; use immediate, blue_green or canary", s.Kind)
	}
}

// checkGraph checks that task ids are unique, every dependency names a task of the pipeline, and the graph has no
// cycle, reporting the same duplicate, dependency or cycle the Rust SDK reports.
func checkGraph(tasks []Task) error {
	seen := map[string]bool{}
	for _, task := range tasks {
		if seen[task.ID] {
			return errorf("task '%s' is defined more than once; task ids must be unique within a pipeline", task.ID)
		}
		seen[task.ID] = true
	}
	parents := map[string][]string{}
	for _, task := range tasks {
		keys := make([]string, 0, len(task.DependsOn))
		for key := range task.DependsOn {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, dependency := range keys {
			if !seen[dependency] {
				return errorf("task '%s' depends on task '%s', which is not defined in this pipeline",
					task.ID, dependency)
			}
		}
		parents[task.ID] = keys
	}
	done := map[string]bool{}
	for _, task := range tasks {
		var path []string
		if cycle := findCycle(task.ID, parents, done, &path); cycle != nil {
			return cycleError(cycle)
		}
	}
	return nil
}

func findCycle(node string, parents map[string][]string, done map[string]bool, path *[]string) []string {
	if done[node] {
		return nil
	}
	for start, n := range *path {
		if n == node {
			// Reported in the direction work flows: parent -> child.
			cycle := []string{node}
			for i := len(*path) - 1; i >= start; i-- {
				cycle = append(cycle, (*path)[i])
			}
			return cycle
		}
	}
	*path = append(*path, node)
	for _, parent := range parents[node] {
		if cycle := findCycle(parent, parents, done, path); cycle != nil {
			return cycle
		}
	}
	*path = (*path)[:len(*path)-1]
	done[node] = true
	return nil
}

func cycleError(path []string) error {
	return errorf("tasks form a dependency cycle (%s); a pipeline must be a directed acyclic graph",
		strings.Join(path, " -> "))
}

func isASCIIAlphanumeric(c rune) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func asciiLower(s string) string {
	return strings.Map(func(c rune) rune {
		if c >= 'A' && c <= 'Z' {
			return c + ('a' - 'A')
		}
		return c
	}, s)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}

func intList(values []int) string {
	parts := make([]string, len(values))
	for i, v := range values {
		parts[i] = strconv.Itoa(v)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// rustDisplay writes a number as Rust's {} does: 0.9, 1.5, 0, inf, NaN (never an exponent).
func rustDisplay(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// charDebug writes a character as Rust's {:?} does, so both SDKs give the same messages: 'a', '\n', '\u{1b}'.
// Combining marks are escaped as Rust escapes grapheme extenders; characters that only a newer Unicode than Go's
// tables knows may still be shown differently.
func charDebug(c rune) string {
	switch c {
	case 0:
		return `'\0'`
	case '\t':
		return `'\t'`
	case '\r':
		return `'\r'`
	case '\n':
		return `'\n'`
	case '\'':
		return `'\''`
	case '\\':
		return `'\\'`
	}
	if unicode.IsControl(c) || unicode.In(c, unicode.Mn, unicode.Me) || !unicode.IsPrint(c) && c != ' ' {
		return fmt.Sprintf(`'\u{%x}'`, c)
	}
	return "'" + string(c) + "'"
}

// validateResources checks the limits, working dir, user and volumes, in the Rust SDK's order.
func (t *Task) validateResources(invalid func(field, reason string) error) error {
	if m := t.CPUMillicores; m != nil && (*m < MinCPUMillicores || *m > MaxCPUMillicores) {
		return invalid("cpu", fmt.Sprintf("%s cores is outside 0.01 to %d cores",
			rustDisplay(float64(*m)/1000), MaxCPUMillicores/1000))
	}
	if b := t.MemoryBytes; b != nil && (*b < MinMemoryBytes || *b > MaxMemoryBytes) {
		return invalid("memory", fmt.Sprintf("%d bytes is outside 6 MiB (%d bytes) to 16 TiB (%d bytes)",
			*b, MinMemoryBytes, MaxMemoryBytes))
	}
	if t.WorkingDir != nil {
		if problem := checkAbsolutePath(*t.WorkingDir); problem != "" {
			return invalid("working_dir", problem)
		}
	}
	if t.User != nil {
		if problem := checkUser(*t.User); problem != "" {
			return invalid("user", problem)
		}
	}
	if len(t.Volumes) > MaxVolumes {
		return invalid("volumes", fmt.Sprintf("%d volumes is more than %d", len(t.Volumes), MaxVolumes))
	}
	paths := map[string]bool{}
	for _, volume := range t.Volumes {
		if err := ValidateIdentifier("volume name", volume.Name); err != nil {
			return invalid("volumes", err.Error())
		}
		if problem := checkAbsolutePath(volume.Path); problem != "" {
			return invalid("volumes", fmt.Sprintf("volume '%s': %s", volume.Name, problem))
		}
		trimmed := strings.TrimRight(volume.Path, "/")
		if trimmed == "" {
			return invalid("volumes", fmt.Sprintf("volume '%s' cannot be mounted at /", volume.Name))
		}
		if paths[trimmed] {
			return invalid("volumes", fmt.Sprintf("two volumes are mounted at %s", volume.Path))
		}
		paths[trimmed] = true
	}
	return nil
}

// checkAbsolutePath says what is wrong with a path inside a container; "" when nothing is.
func checkAbsolutePath(path string) string {
	switch {
	case !strings.HasPrefix(path, "/"):
		return fmt.Sprintf("'%s' is not an absolute path; start it with /", path)
	case len(path) > MaxPathLen:
		return fmt.Sprintf("the path is longer than %d bytes", MaxPathLen)
	case strings.Contains(path, "\x00"):
		return "the path contains a NUL byte"
	}
	for _, part := range strings.Split(path, "/") {
		if part == ".." {
			return fmt.Sprintf("'%s' contains '..'", path)
		}
	}
	return ""
}

// checkUser says what is wrong with a user (name, uid, name:group or uid:gid); "" when nothing is.
func checkUser(user string) string {
	parts := strings.Split(user, ":")
	partOK := func(part string) bool {
		if part == "" || len(part) > 64 {
			return false
		}
		for _, c := range part {
			if !(isASCIIAlphanumeric(c) || c == '_' || c == '-' || c == '.') {
				return false
			}
		}
		return true
	}
	if len(parts) > 2 || !partOK(parts[0]) || (len(parts) == 2 && !partOK(parts[1])) {
		return fmt.Sprintf("'%s' is not a user; give a name or uid, optionally with a group or gid (e.g. \"1000:1000\")", user)
	}
	return ""
}
