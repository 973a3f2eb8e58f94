// Command temporalclient drives a real Temporal server for the integration suite: it registers a namespace,
// runs a worker, starts workflows (some complete at once, some stay open on a timer or a signal), signals
// them, and lists every workflow through visibility with its history. Each command prints one JSON object
// on stdout that the Python tests assert on; errors go to stderr with a non-zero exit.
//
//	temporalclient register -address HOST:PORT -namespace NS
//	temporalclient start    -address HOST:PORT -namespace NS -completed N -signal N -timer N -timer-seconds S
//	temporalclient finish   -address HOST:PORT -namespace NS -signal-ids a,b -wait-ids a,b,c
//	temporalclient list     -address HOST:PORT -namespace NS -expect N -expect-completed N
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/types/known/durationpb"
)

// quiet keeps the SDK's own logs (to stderr) to warnings and errors: stdout is the JSON result.
var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

const (
	taskQueue  = "migrator-test"
	signalName = "proceed"
)

// Greet is the one activity: a workflow that completes has run an activity on the worker.
func Greet(ctx context.Context, name string) (string, error) {
	activity.GetLogger(ctx).Info("greeting", "name", name)
	return "hello " + name, nil
}

// GreetWorkflow completes as soon as its activity has run.
func GreetWorkflow(ctx workflow.Context, name string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	var greeting string
	err := workflow.ExecuteActivity(ctx, Greet, name).Get(ctx, &greeting)
	return greeting, err
}

// SignalWorkflow stays open until it receives the "proceed" signal, then runs the activity.
func SignalWorkflow(ctx workflow.Context, name string) (string, error) {
	var payload string
	workflow.GetSignalChannel(ctx, signalName).Receive(ctx, &payload)
	greeting, err := GreetWorkflow(ctx, name)
	return greeting + " after " + payload, err
}

// TimerWorkflow stays open on a durable timer, then runs the activity.
func TimerWorkflow(ctx workflow.Context, name string, seconds int) (string, error) {
	if err := workflow.Sleep(ctx, time.Duration(seconds)*time.Second); err != nil {
		return "", err
	}
	greeting, err := GreetWorkflow(ctx, name)
	return greeting + " after a timer", err
}

type options struct {
	address, namespace       string
	completed, signal, timer int
	timerSeconds, expect     int
	expectCompleted          int
	signalIDs, waitIDs       string
	timeout                  time.Duration
}

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: temporalclient register|start|finish|list [flags]"))
	}
	command := os.Args[1]
	var o options
	flags := flag.NewFlagSet(command, flag.ExitOnError)
	flags.StringVar(&o.address, "address", "127.0.0.1:7233", "frontend host:port")
	flags.StringVar(&o.namespace, "namespace", "migrator-test", "namespace")
	flags.IntVar(&o.completed, "completed", 2, "start: workflows that complete at once")
	flags.IntVar(&o.signal, "signal", 1, "start: workflows that wait for a signal")
	flags.IntVar(&o.timer, "timer", 1, "start: workflows that wait on a timer")
	flags.IntVar(&o.timerSeconds, "timer-seconds", 20, "start: the timer's duration")
	flags.StringVar(&o.signalIDs, "signal-ids", "", "finish: workflow ids to signal (comma-separated)")
	flags.StringVar(&o.waitIDs, "wait-ids", "", "finish: workflow ids whose results to wait for")
	flags.IntVar(&o.expect, "expect", 0, "list: wait until visibility lists at least this many workflows")
	flags.IntVar(&o.expectCompleted, "expect-completed", 0, "list: ... and at least this many as completed")
	flags.DurationVar(&o.timeout, "timeout", 2*time.Minute, "overall deadline")
	if err := flags.Parse(os.Args[2:]); err != nil {
		fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	var (
		out any
		err error
	)
	switch command {
	case "register":
		out, err = register(ctx, o)
	case "start":
		out, err = withWorker(ctx, o, start)
	case "finish":
		out, err = withWorker(ctx, o, finish)
	case "list":
		out, err = withClient(ctx, o, list)
	default:
		err = fmt.Errorf("unknown command %q", command)
	}
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "temporalclient:", err)
	os.Exit(1)
}

func dial(ctx context.Context, o options) (client.Client, error) {
	// The server may still be starting: retry until the deadline.
	for {
		c, err := client.DialContext(ctx, client.Options{
			HostPort: o.address, Namespace: o.namespace, Logger: log.NewStructuredLogger(quiet),
		})
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dial %s: %w", o.address, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func withClient(ctx context.Context, o options, run func(context.Context, client.Client, options) (any, error)) (any, error) {
	c, err := dial(ctx, o)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return run(ctx, c, o)
}

func withWorker(ctx context.Context, o options, run func(context.Context, client.Client, options) (any, error)) (any, error) {
	return withClient(ctx, o, func(ctx context.Context, c client.Client, o options) (any, error) {
		w := worker.New(c, taskQueue, worker.Options{})
		w.RegisterWorkflow(GreetWorkflow)
		w.RegisterWorkflow(SignalWorkflow)
		w.RegisterWorkflow(TimerWorkflow)
		w.RegisterActivity(Greet)
		if err := w.Start(); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		defer w.Stop()
		return run(ctx, c, o)
	})
}

func register(ctx context.Context, o options) (any, error) {
	c, err := dial(ctx, o)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_, err = c.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace:                        o.namespace,
		WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour),
	})
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return nil, fmt.Errorf("register namespace: %w", err)
	}
	return map[string]any{"namespace": o.namespace, "registered": err == nil}, nil
}

type started struct {
	ID     string `json:"id"`
	RunID  string `json:"run_id"`
	Kind   string `json:"kind"`
	Result string `json:"result,omitempty"`
}

// startWorkflow retries while a newly registered namespace is not yet known to the frontend.
func startWorkflow(ctx context.Context, c client.Client, id string, wf any, args ...any) (client.WorkflowRun, error) {
	for {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue}, wf, args...)
		var notFound *serviceerror.NamespaceNotFound
		if err == nil || !errors.As(err, &notFound) || ctx.Err() != nil {
			return run, err
		}
		time.Sleep(time.Second)
	}
}

func start(ctx context.Context, c client.Client, o options) (any, error) {
	suffix := time.Now().UTC().Format("150405.000")
	var out []started
	for i := 0; i < o.completed; i++ {
		id := fmt.Sprintf("completed-%d-%s", i, suffix)
		run, err := startWorkflow(ctx, c, id, GreetWorkflow, id)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", id, err)
		}
		var result string
		if err := run.Get(ctx, &result); err != nil {
			return nil, fmt.Errorf("result of %s: %w", id, err)
		}
		out = append(out, started{id, run.GetRunID(), "completed", result})
	}
	for i := 0; i < o.signal; i++ {
		id := fmt.Sprintf("signal-%d-%s", i, suffix)
		run, err := startWorkflow(ctx, c, id, SignalWorkflow, id)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", id, err)
		}
		out = append(out, started{id, run.GetRunID(), "signal", ""})
	}
	for i := 0; i < o.timer; i++ {
		id := fmt.Sprintf("timer-%d-%s", i, suffix)
		run, err := startWorkflow(ctx, c, id, TimerWorkflow, id, o.timerSeconds)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", id, err)
		}
		out = append(out, started{id, run.GetRunID(), "timer", ""})
	}
	// The open workflows have taken their first workflow task (timer scheduled, signal awaited) before we stop.
	for _, s := range out[o.completed:] {
		if err := waitForStarted(ctx, c, s.ID); err != nil {
			return nil, err
		}
	}
	return map[string]any{"workflows": out}, nil
}

func waitForStarted(ctx context.Context, c client.Client, id string) error {
	for {
		desc, err := c.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			return fmt.Errorf("describe %s: %w", id, err)
		}
		if desc.GetPendingWorkflowTask() == nil && desc.GetWorkflowExecutionInfo().GetHistoryLength() > 2 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s never ran its first workflow task: %w", id, ctx.Err())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func split(ids string) []string {
	if ids == "" {
		return nil
	}
	return strings.Split(ids, ",")
}

func finish(ctx context.Context, c client.Client, o options) (any, error) {
	for _, id := range split(o.signalIDs) {
		if err := c.SignalWorkflow(ctx, id, "", signalName, "a signal"); err != nil {
			return nil, fmt.Errorf("signal %s: %w", id, err)
		}
	}
	results := map[string]string{}
	for _, id := range split(o.waitIDs) {
		var result string
		if err := c.GetWorkflow(ctx, id, "").Get(ctx, &result); err != nil {
			return nil, fmt.Errorf("result of %s: %w", id, err)
		}
		results[id] = result
	}
	return map[string]any{"results": results}, nil
}

type listed struct {
	ID            string   `json:"id"`
	RunID         string   `json:"run_id"`
	Type          string   `json:"type"`
	Status        string   `json:"status"`
	HistoryLength int      `json:"history_length"`
	Events        []string `json:"events"`
}

// list waits until visibility lists at least -expect workflows, -expect-completed of them completed (it is
// eventually consistent), then reads
// each one's full history through the history service.
func list(ctx context.Context, c client.Client, o options) (any, error) {
	var executions []listed
	for {
		executions = executions[:0]
		var token []byte
		for {
			page, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
				Namespace: o.namespace, NextPageToken: token,
			})
			if err != nil {
				return nil, fmt.Errorf("list workflows: %w", err)
			}
			for _, e := range page.GetExecutions() {
				executions = append(executions, listed{
					ID: e.GetExecution().GetWorkflowId(), RunID: e.GetExecution().GetRunId(),
					Type: e.GetType().GetName(), Status: e.GetStatus().String(),
				})
			}
			if token = page.GetNextPageToken(); len(token) == 0 {
				break
			}
		}
		if len(executions) >= o.expect && completedCount(executions) >= o.expectCompleted {
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("visibility listed %d workflows (%d completed), expected %d (%d completed): %w",
				len(executions), completedCount(executions), o.expect, o.expectCompleted, ctx.Err())
		}
		time.Sleep(500 * time.Millisecond)
	}
	for i := range executions {
		events, err := history(ctx, c, executions[i])
		if err != nil {
			return nil, err
		}
		executions[i].Events, executions[i].HistoryLength = events, len(events)
	}
	return map[string]any{"workflows": executions}, nil
}

// historyAttempt bounds one read of a history: a server that just started may still route the call to the
// history host of a server stopped before it (until its membership expires), where it hangs until its deadline.
const historyAttempt = 10 * time.Second

// history reads one workflow's event types, retrying a failed or hung read until ctx ends.
func history(ctx context.Context, c client.Client, e listed) ([]string, error) {
	for {
		attempt, cancel := context.WithTimeout(ctx, historyAttempt)
		var events []string
		var err error
		iter := c.GetWorkflowHistory(attempt, e.ID, e.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for err == nil && iter.HasNext() {
			var event *historypb.HistoryEvent
			if event, err = iter.Next(); err == nil {
				events = append(events, event.GetEventType().String())
			}
		}
		cancel()
		if err == nil {
			return events, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("history of %s: %w", e.ID, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// completedCount: visibility records a completion after the history does; callers wait for it.
func completedCount(executions []listed) int {
	n := 0
	for _, e := range executions {
		if e.Status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED.String() {
			n++
		}
	}
	return n
}
