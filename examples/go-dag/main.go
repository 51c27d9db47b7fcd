// A DAG with every kind of edge, in Go (the same pipeline as examples/dag, in Rust):
//
//	          ┌─▶ lint  (Success) ─┐
//	checkout ─┤                    ├─▶ report (Any)
//	          └─▶ test  (Success) ─┘
//	                │
//	                ├─▶ on-failure (Failure)   runs, because `test` fails
//	                └─▶ publish    (Success)   skipped, because `test` fails
//
// `gofer pipeline deploy examples/go-dag` runs this program (`go run .`) and registers what it prints.
package main

import (
	"log"

	sdk "example.invalid/gofer/sdk/go/config"
)

func main() {
	const image = "busybox:latest"
	err := sdk.NewPipeline("go-dag", "DAG pipeline in Go").
		Description("Parallel tasks, a failing test, a failure handler and a skipped publish step.").
		Tasks(
			sdk.NewTask("checkout", image).Script("echo checking out; sleep 1; echo done"),
			sdk.NewTask("lint", image).DependsOn("checkout", sdk.RequiredParentStatusSuccess).Script("echo lint clean"),
			sdk.NewTask("test", image).
				DependsOn("checkout", sdk.RequiredParentStatusSuccess).
				Variables(map[string]string{"FAILING_TEST": "test_parser"}).
				Script(`echo running tests; echo "FAILED: $FAILING_TEST" >&2; exit 3`),
			sdk.NewTask("on-failure", image).
				DependsOn("test", sdk.RequiredParentStatusFailure).
				Script("echo tests failed, notifying the team"),
			sdk.NewTask("publish", image).
				DependsOn("test", sdk.RequiredParentStatusSuccess).
				DependsOn("lint", sdk.RequiredParentStatusSuccess).
				Script("echo publishing"),
			sdk.NewTask("report", image).
				DependsOnMany(map[string]sdk.RequiredParentStatus{
					"lint": sdk.RequiredParentStatusAny,
					"test": sdk.RequiredParentStatusAny,
				}).
				Script("echo writing the report"),
		).
		Finish()
	if err != nil {
		log.Fatal(err)
	}
}
