package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Strategy is how a new version of a pipeline replaces the live one: at once (Immediate), after verification runs
// (BlueGreen), or by sending a share of new runs to it and judging them (Canary).
type Strategy struct {
	// Kind is "immediate", "blue_green" or "canary".
	Kind string
	// BlueGreen: runs of the new version that must succeed before it goes live, and variables they get.
	VerifyRuns uint32
	Variables  map[string]string
	// Canary: the share of new runs (percent) per stage, the completed runs each stage needs, the share of them
	// that must succeed, and how long each stage bakes.
	Steps            []int
	MinRuns          uint32
	SuccessThreshold float64
	BakeSeconds      uint64
}

// Immediate makes the new version live at once.
func Immediate() *Strategy { return &Strategy{Kind: "immediate"} }

// BlueGreen makes the new version live once verifyRuns runs of it succeeded.
func BlueGreen(verifyRuns uint32) *Strategy {
	return &Strategy{Kind: "blue_green", VerifyRuns: verifyRuns, Variables: map[string]string{}}
}

// Canary sends weight percent of new runs to the new version and promotes it once minRuns of them completed with
// at least successThreshold (0 to 1) successful.
func Canary(weight int, minRuns uint32, successThreshold float64) *Strategy {
	return &Strategy{Kind: "canary", Steps: []int{weight}, MinRuns: minRuns, SuccessThreshold: successThreshold}
}

// WithSteps replaces a canary's stages: the share of runs each takes, rising.
func (s *Strategy) WithSteps(steps ...int) *Strategy {
	if s.Kind == "canary" {
		s.Steps = append([]int{}, steps...)
	}
	return s
}

// Bake holds each canary stage at least this long (rounded up to whole seconds) before it is judged.
func (s *Strategy) Bake(bake time.Duration) *Strategy {
	if s.Kind == "canary" {
		s.BakeSeconds = wholeSeconds(bake)
	}
	return s
}

// VerifyVariable gives blue/green verification runs a variable.
func (s *Strategy) VerifyVariable(key, value string) *Strategy {
	if s.Kind == "blue_green" {
		if s.Variables == nil {
			s.Variables = map[string]string{}
		}
		s.Variables[key] = value
	}
	return s
}

type blueGreenJSON struct {
	Kind       string            `json:"kind"`
	VerifyRuns uint32            `json:"verify_runs"`
	Variables  map[string]string `json:"variables,omitempty"`
}

type canaryJSON struct {
	Kind             string    `json:"kind"`
	Steps            []int     `json:"steps"`
	MinRuns          uint32    `json:"min_runs"`
	SuccessThreshold jsonFloat `json:"success_threshold"`
	BakeSeconds      uint64    `json:"bake_seconds,omitempty"`
}

// jsonFloat writes a number as the Rust SDK does (serde_json's shortest form, laid out like ryu's): 0.9, 1.0,
// 0.00001, 1e-6, 1.5e-7.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	return []byte(rustFloat(float64(f))), nil
}

func rustFloat(f float64) string {
	if f == 0 {
		return "0.0"
	}
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	// The shortest digits that read back as f, and where the decimal point goes after the first of them.
	scientific := strconv.FormatFloat(f, 'e', -1, 64)
	mantissa, exponentText, _ := strings.Cut(scientific, "e")
	digits := strings.Replace(mantissa, ".", "", 1)
	exponent, _ := strconv.Atoi(exponentText)
	point := exponent + 1 // digits before the decimal point
	switch {
	case point >= len(digits) && point <= 16:
		return sign + digits + strings.Repeat("0", point-len(digits)) + ".0"
	case point > 0 && point <= 16:
		return sign + digits[:point] + "." + digits[point:]
	case point > -5 && point <= 0:
		return sign + "0." + strings.Repeat("0", -point) + digits
	case len(digits) == 1:
		return sign + digits + "e" + strconv.Itoa(point-1)
	default:
		return sign + digits[:1] + "." + digits[1:] + "e" + strconv.Itoa(point-1)
	}
}

// marshal writes JSON without Go's HTML escaping (serde does not escape <, > and &).
func marshal(value interface{}) ([]byte, error) {
	var out bytes.Buffer
	encoder := json.NewEncoder(&out)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(value); err != nil {
		return nil, err
	}
	return bytes.TrimRight(out.Bytes(), "\n"), nil
}

// MarshalJSON writes the strategy as the config document has it: {"kind": "canary", ...}.
func (s Strategy) MarshalJSON() ([]byte, error) {
	switch s.Kind {
	case "blue_green":
		return marshal(blueGreenJSON{s.Kind, s.VerifyRuns, s.Variables})
	case "canary":
		steps := s.Steps
		if steps == nil {
			steps = []int{}
		}
		return marshal(canaryJSON{s.Kind, steps, s.MinRuns, jsonFloat(s.SuccessThreshold), s.BakeSeconds})
	default:
		return marshal(struct {
			Kind string `json:"kind"`
		}{s.Kind})
	}
}

// UnmarshalJSON reads a strategy, refusing fields its kind does not have.
func (s *Strategy) UnmarshalJSON(data []byte) error {
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return err
	}
	strict := func(into interface{}) error {
		decoder := json.NewDecoder(bytes.NewReader(data))
		decoder.DisallowUnknownFields()
		return decoder.Decode(into)
	}
	switch head.Kind {
	case "immediate":
		var v struct {
			Kind string `json:"kind"`
		}
		if err := strict(&v); err != nil {
			return err
		}
		*s = Strategy{Kind: v.Kind}
	case "blue_green":
		var v blueGreenJSON
		if err := strict(&v); err != nil {
			return err
		}
		*s = Strategy{Kind: v.Kind, VerifyRuns: v.VerifyRuns, Variables: v.Variables}
	case "canary":
		var v struct {
			Kind             string  `json:"kind"`
			Steps            []int   `json:"steps"`
			MinRuns          uint32  `json:"min_runs"`
			SuccessThreshold float64 `json:"success_threshold"`
			BakeSeconds      uint64  `json:"bake_seconds"`
		}
		if err := strict(&v); err != nil {
			return err
		}
		*s = Strategy{Kind: v.Kind, Steps: v.Steps, MinRuns: v.MinRuns, SuccessThreshold: v.SuccessThreshold,
			BakeSeconds: v.BakeSeconds}
	default:
		return fmt.Errorf("unknown deploy strategy kind %q; use immediate, blue_green or canary", head.Kind)
	}
	return nil
}
