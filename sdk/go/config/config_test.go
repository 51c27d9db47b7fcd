package config

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"testing"
	"time"
)

type vector struct {
	Name   string          `json:"name"`
	Config json.RawMessage `json:"config"`
	Error  *string         `json:"error"`
	JSON   *string         `json:"json"`
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	text, err := os.ReadFile("../../testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []vector
	if err := json.Unmarshal(text, &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors) < 45 {
		t.Fatalf("only %d vectors", len(vectors))
	}
	return vectors
}

// The Go SDK judges every shared vector as the Rust SDK recorded: the same ones valid, the same message for each
// invalid one, and the same bytes written for each valid one.
func TestSharedVectorsAreJudgedLikeTheRustSDK(t *testing.T) {
	for _, v := range loadVectors(t) {
		decoder := json.NewDecoder(bytes.NewReader(v.Config))
		decoder.DisallowUnknownFields()
		var pipeline Pipeline
		if err := decoder.Decode(&pipeline); err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		err := pipeline.Validate()
		switch {
		case v.Error != nil && err == nil:
			t.Errorf("%s: valid in Go, but the Rust SDK says: %s", v.Name, *v.Error)
		case v.Error != nil && err.Error() != *v.Error:
			t.Errorf("%s:\n  Go:   %s\n  Rust: %s", v.Name, err.Error(), *v.Error)
		case v.Error == nil && err != nil:
			t.Errorf("%s: the Rust SDK takes it, Go says: %v", v.Name, err)
		case v.Error == nil:
			written, err := pipeline.JSON()
			if err != nil {
				t.Fatal(err)
			}
			if written != *v.JSON {
				t.Errorf("%s: written differently\n  Go:   %s\n  Rust: %s", v.Name, written, *v.JSON)
			}
		}
	}
}

// A config built with the builder is byte for byte the one the Rust SDK writes for the same pipeline.
func TestTheBuilderWritesWhatTheRustSDKWrites(t *testing.T) {
	var full *vector
	for _, v := range loadVectors(t) {
		if v.Name == "full" {
			v := v
			full = &v
		}
	}
	if full == nil || full.JSON == nil {
		t.Fatal("no valid vector named full")
	}
	build := NewTask("build", "busybox:latest").
		Description("Builds.").
		Variables(map[string]string{"GREETING": "hi", "Z_LAST": "1", "DB": PipelineSecret("db_password")}).
		Variables(map[string]string{"SHARED": "global_secret{{ token }}", "OBJ": PipelineObject("report.txt")}).
		Variables(map[string]string{"RUN": "Run_Object{{out-1}}"}).
		Command("sh", "-c", "echo <&> \"quoted\" ünïcode").
		Entrypoint("/bin/sh").
		InjectAPIToken(true).
		AlwaysPullNewestImage(true).
		Timeout(29500*time.Millisecond).
		Retries(2).
		RegistryAuth("me", PipelineSecret("REG"))
	pipeline := NewPipeline("p", "P").
		Description("Line one.\nLine two.\tTabbed").
		Parallelism(3).
		Timeout(10*time.Minute).
		Subscribe("interval", "hourly", map[string]string{"every": "1h"}).
		Subscribe("cron", "nightly", map[string]string{"expression": "0 3 * * *", "timezone": "Europe/Berlin"}).
		DeployStrategy(Canary(10, 5, 0.9).WithSteps(10, 50).Bake(time.Minute)).
		KeepFailedContainers(5*time.Minute).
		Tasks(
			build,
			NewTask("test", "busybox:latest").DependsOn("build", RequiredParentStatusSuccess),
			NewTask("notify", "busybox:latest").DependsOnMany(map[string]RequiredParentStatus{
				"test": RequiredParentStatusFailure, "build": RequiredParentStatusAny}),
			NewTask("old", "busybox:latest").DependsOn("build", RequiredParentStatusUnknown),
		)
	if err := pipeline.Validate(); err != nil {
		t.Fatal(err)
	}
	written, err := pipeline.Pipeline.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if written != *full.JSON {
		t.Errorf("the builder wrote\n  %s\nthe Rust SDK wrote\n  %s", written, *full.JSON)
	}
}

// The earlier SDK's vocabulary, as its programs use it.
func TestEarlierProgramsReadTheSame(t *testing.T) {
	err := NewPipeline("simple", "Simple Pipeline").
		Description("This pipeline shows off a very simple Gofer pipeline.").
		Tasks(
			NewTask("simple_task", "ubuntu:latest").
				Description("This task simply prints our hello-world message and exists!").
				Command("echo", "Hello from Gofer!").
				Variables(map[string]string{"SECRET": GlobalSecret("my_key"), "OBJ": RunObject("out")}),
		).Validate()
	if err != nil {
		t.Fatal(err)
	}
	script := NewTask("s", "busybox").Script("\n  echo hi\n")
	if got := script.Task.Command; len(got) != 3 || got[0] != "sh" || got[2] != "echo hi" {
		t.Errorf("script: %q", got)
	}
	cycle := NewPipeline("c", "").Tasks(
		NewTask("a", "i").DependsOn("b", RequiredParentStatusAny),
		NewTask("b", "i").DependsOn("a", RequiredParentStatusAny),
	).Finish()
	if cycle == nil || cycle.Error() != "tasks form a dependency cycle (a -> b -> a); a pipeline must be a directed acyclic graph" {
		t.Errorf("cycle: %v", cycle)
	}
}

// The resource builders write what the Rust SDK's write, and out-of-range CPU values are kept so validation
// refuses them (never a conversion Go leaves undefined).
func TestResourcesAreBuiltLikeTheRustSDK(t *testing.T) {
	var every *vector
	for _, v := range loadVectors(t) {
		if v.Name == "resources: every field" {
			v := v
			every = &v
		}
	}
	if every == nil || every.JSON == nil {
		t.Fatal("no valid vector named 'resources: every field'")
	}
	task := NewTask("a", "busybox:latest").
		CPU(1.5).
		Memory(512*MiB).
		WorkingDir("/work").
		User("1000:1000").
		Volume("cache", "/cache").
		ReadOnlyVolume("ref-data", "/data/")
	written, err := NewPipeline("p", "P").Tasks(task).Pipeline.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if written != *every.JSON {
		t.Errorf("the builder wrote\n  %s\nthe Rust SDK wrote\n  %s", written, *every.JSON)
	}
	for cores, want := range map[float64]uint32{0.0004: 0, -2: 0, math.NaN(): 0, math.Inf(1): math.MaxUint32, 0.0105: 11} {
		if got := *NewTask("a", "i").CPU(cores).Task.CPUMillicores; got != want {
			t.Errorf("CPU(%v) kept %d millicores, want %d", cores, got, want)
		}
	}
}
