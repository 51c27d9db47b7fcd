// Package config builds Gofer pipeline configs in Go: a pipeline is a program that builds its DAG of container tasks
// and calls Finish, which validates the config exactly as Gofer's server (and its Rust SDK) does and prints it as
// JSON on stdout, where `gofer pipeline deploy DIR`, `gofer up DIR` and `gofer run local DIR` read it.
//
// The vocabulary is the earlier Gofer Go SDK's (NewPipeline, NewTask, DependsOn, Variables, Script, PipelineSecret,
// Finish, ...), so its programs need only a new import path; see README.md for the few differences.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// Pipeline is the config document Gofer registers. Build it with NewPipeline.
type Pipeline struct {
	ID                string         `json:"id"`
	Name              string         `json:"name"`
	Description       *string        `json:"description"`
	Parallelism       int64          `json:"parallelism"`
	Tasks             []Task         `json:"tasks"`
	TimeoutSeconds    *uint64        `json:"timeout_seconds,omitempty"`
	Subscriptions     []Subscription `json:"subscriptions,omitempty"`
	DeployStrategy    *Strategy      `json:"deploy_strategy,omitempty"`
	KeepFailedSeconds *uint64        `json:"keep_failed_seconds,omitempty"`
}

// Subscription is a trigger declared in code: deploying the config makes the pipeline's declared subscriptions
// equal these.
type Subscription struct {
	Extension string            `json:"extension"`
	Label     string            `json:"label"`
	Settings  map[string]string `json:"settings"`
}

// PipelineWrapper is the builder NewPipeline returns (the earlier SDK's name for it).
type PipelineWrapper struct {
	Pipeline
}

// NewPipeline starts a pipeline with an id (unique within a namespace) and a display name.
func NewPipeline(id, name string) *PipelineWrapper {
	return &PipelineWrapper{Pipeline{ID: id, Name: name, Tasks: []Task{}}}
}

// Description says what the pipeline is for.
func (p *PipelineWrapper) Description(description string) *PipelineWrapper {
	p.Pipeline.Description = &description
	return p
}

// Parallelism is how many runs may be active at once; 0 (the default) leaves it to the server's limit.
func (p *PipelineWrapper) Parallelism(parallelism int64) *PipelineWrapper {
	p.Pipeline.Parallelism = parallelism
	return p
}

// Tasks sets the pipeline's tasks, replacing any set before.
func (p *PipelineWrapper) Tasks(tasks ...*TaskWrapper) *PipelineWrapper {
	p.Pipeline.Tasks = make([]Task, 0, len(tasks))
	for _, task := range tasks {
		p.Pipeline.Tasks = append(p.Pipeline.Tasks, task.Task)
	}
	return p
}

// Timeout is the longest a whole run may take (rounded up to whole seconds); past it the run is cancelled with
// reason `timeout`. The server may cap it.
func (p *PipelineWrapper) Timeout(timeout time.Duration) *PipelineWrapper {
	seconds := wholeSeconds(timeout)
	p.Pipeline.TimeoutSeconds = &seconds
	return p
}

// Subscribe declares a trigger, e.g. Subscribe("interval", "hourly", map[string]string{"every": "1h"}) or
// Subscribe("cron", "nightly", map[string]string{"expression": "0 3 * * *", "timezone": "Europe/Berlin"}).
func (p *PipelineWrapper) Subscribe(extension, label string, settings map[string]string) *PipelineWrapper {
	copied := map[string]string{}
	for key, value := range settings {
		copied[key] = value
	}
	p.Pipeline.Subscriptions = append(p.Pipeline.Subscriptions, Subscription{extension, label, copied})
	return p
}

// DeployStrategy is how `gofer pipeline deploy` rolls this config out unless told otherwise, e.g.
// DeployStrategy(Canary(20, 5, 0.9)).
func (p *PipelineWrapper) DeployStrategy(strategy *Strategy) *PipelineWrapper {
	p.Pipeline.DeployStrategy = strategy
	return p
}

// KeepFailedContainers keeps the filesystem of a task that fails with an exit code this long (rounded up to whole
// seconds) in a debug container that `gofer task exec` and `gofer task attach` reach.
func (p *PipelineWrapper) KeepFailedContainers(keep time.Duration) *PipelineWrapper {
	seconds := wholeSeconds(keep)
	p.Pipeline.KeepFailedSeconds = &seconds
	return p
}

// Validate checks everything the server will check, with the same messages.
func (p *PipelineWrapper) Validate() error {
	return p.Pipeline.Validate()
}

// Finish validates the pipeline and prints it as JSON on stdout, where `gofer pipeline deploy` reads it.
func (p *PipelineWrapper) Finish() error {
	if err := p.Validate(); err != nil {
		return err
	}
	text, err := p.Pipeline.JSON()
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(os.Stdout, text); err != nil {
		return &ConfigError{fmt.Sprintf("could not write the pipeline config to stdout: %v", err)}
	}
	return nil
}

// JSON is the config as Gofer reads it: the same bytes the Rust SDK writes for the same config.
func (p *Pipeline) JSON() (string, error) {
	normalized := *p
	normalized.normalize()
	var out bytes.Buffer
	encoder := json.NewEncoder(&out)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(&normalized); err != nil {
		return "", &ConfigError{fmt.Sprintf("could not write the pipeline config to stdout: %v", err)}
	}
	return serdeEscapes(bytes.TrimRight(out.Bytes(), "\n")), nil
}

// serdeEscapes rewrites the few escapes Go's encoder writes differently from serde_json's: \b and \f (Go writes
// \u0008 and \u000c), and U+2028 and U+2029, which serde leaves as they are. Escapes are read pairwise, so an
// escaped backslash followed by "u0008" is left alone.
func serdeEscapes(text []byte) string {
	var out strings.Builder
	out.Grow(len(text))
	for i := 0; i < len(text); i++ {
		if text[i] != '\\' || i+1 >= len(text) {
			out.WriteByte(text[i])
			continue
		}
		if text[i+1] == 'u' && i+6 <= len(text) {
			switch string(text[i+2 : i+6]) {
			case "0008":
				out.WriteString(`\b`)
				i += 5
				continue
			case "000c":
				out.WriteString(`\f`)
				i += 5
				continue
			case "2028":
				out.WriteString("\u2028")
				i += 5
				continue
			case "2029":
				out.WriteString("\u2029")
				i += 5
				continue
			}
		}
		out.WriteByte(text[i])
		out.WriteByte(text[i+1])
		i++
	}
	return out.String()
}

// normalize gives absent collections their empty values, as the config document has them.
func (p *Pipeline) normalize() {
	if p.Tasks == nil {
		p.Tasks = []Task{}
	}
	tasks := make([]Task, len(p.Tasks))
	for i, task := range p.Tasks {
		if task.DependsOn == nil {
			task.DependsOn = map[string]RequiredParentStatus{}
		}
		if task.Variables == nil {
			task.Variables = map[string]string{}
		}
		tasks[i] = task
	}
	p.Tasks = tasks
	for i := range p.Subscriptions {
		if p.Subscriptions[i].Settings == nil {
			p.Subscriptions[i].Settings = map[string]string{}
		}
	}
}

// ConfigError says why a config was refused, naming the pipeline or task and the problem.
type ConfigError struct {
	message string
}

func (e *ConfigError) Error() string { return e.message }

func wholeSeconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	seconds := uint64(d / time.Second)
	if d%time.Second != 0 {
		seconds++
	}
	return seconds
}
