// Command argosync runs one sync operation of a set of manifests into one namespace the way Argo CD's
// application controller does: gitops-engine's sync package, one step per second, each step on a sync context
// rebuilt from fresh live state (with the operation's state carried over), until the operation completes. The
// engine's own Sync helper (used by its example agent) builds the context once, so it never sees a hook Job that
// was created during the operation finish, and a PreSync hook waits forever.
//
//	argosync --kubeconfig FILE --namespace NS --app NAME --revision REV MANIFESTS.yaml
//
// Prints the operation's phase, message and per-resource results as JSON; exits 0 when it succeeded, 1 otherwise.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2/textlogger"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/cache"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/sync"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/sync/common"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/kube"
	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/utils/tracing"
)

// Argo CD's annotation-based resource tracking: what marks a live object as the Application's.
const trackingAnnotation = "argocd.argoproj.io/tracking-id"

type result struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	SyncPhase string `json:"syncPhase"`
	HookType  string `json:"hookType,omitempty"`
	HookPhase string `json:"hookPhase,omitempty"`
	Status    string `json:"status"`
	Message   string `json:"message"`
	Order     int    `json:"order"`
}

type operation struct {
	Phase     string   `json:"phase"`
	Message   string   `json:"message"`
	Steps     int      `json:"steps"`
	Results   []result `json:"results"`
	StartedAt string   `json:"startedAt"`
}

func trackingID(app string, obj *unstructured.Unstructured) string {
	gvk := obj.GroupVersionKind()
	return fmt.Sprintf("%s:%s/%s:%s/%s", app, gvk.Group, gvk.Kind, obj.GetNamespace(), obj.GetName())
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file")
	namespace := flag.String("namespace", "", "the Application's destination namespace")
	app := flag.String("app", "app", "the Application's name (resource tracking)")
	revision := flag.String("revision", "", "the revision synced")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up on the operation after this long")
	flag.Parse()
	if flag.NArg() != 1 || *namespace == "" {
		fmt.Fprintln(os.Stderr, "usage: argosync --namespace NS [--app NAME] [--revision REV] MANIFESTS.yaml")
		os.Exit(2)
	}
	log := textlogger.NewLogger(textlogger.NewConfig())
	op, err := run(log, *kubeconfig, *namespace, *app, *revision, flag.Arg(0), *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "argosync:", err)
		os.Exit(1)
	}
	out, _ := json.MarshalIndent(op, "", "  ")
	fmt.Println(string(out))
	if op.Phase != string(common.OperationSucceeded) {
		os.Exit(1)
	}
}

func run(log logr.Logger, kubeconfig, namespace, app, revision, manifests string,
	timeout time.Duration) (*operation, error) {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(manifests)
	if err != nil {
		return nil, err
	}
	targets, err := kube.SplitYAML(data)
	if err != nil {
		return nil, err
	}
	for _, obj := range targets {
		if obj.GetNamespace() == "" {
			obj.SetNamespace(namespace)
		}
		annotations := obj.GetAnnotations()
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[trackingAnnotation] = trackingID(app, obj)
		obj.SetAnnotations(annotations)
	}

	clusterCache := cache.NewClusterCache(config,
		cache.SetNamespaces([]string{namespace}),
		cache.SetLogr(log),
		cache.SetPopulateResourceInfoHandler(func(un *unstructured.Unstructured, _ bool) (any, bool) {
			id := un.GetAnnotations()[trackingAnnotation]
			return id, strings.HasPrefix(id, app+":")
		}),
	)
	if err := clusterCache.EnsureSynced(); err != nil {
		return nil, err
	}
	defer clusterCache.Invalidate()
	isManaged := func(r *cache.Resource) bool {
		id, _ := r.Info.(string)
		return strings.HasPrefix(id, app+":")
	}
	kubectl := &kube.KubectlCmd{Log: log, Tracer: tracing.NopTracer{}}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var (
		phase     common.OperationPhase
		message   string
		results   []common.ResourceSyncResult
		startedAt = metav1.Now()
		steps     int
	)
	for !phase.Completed() {
		if steps > 0 {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("operation still %s after %s: %s", phase, timeout, message)
			case <-time.After(time.Second):
			}
		}
		steps++
		live, err := clusterCache.GetManagedLiveObjs(targets, isManaged)
		if err != nil {
			return nil, err
		}
		reconciled := sync.Reconcile(targets, live, namespace, clusterCache)
		syncCtx, cleanup, err := sync.NewSyncContext(revision, reconciled, config, config, kubectl, namespace,
			sync.WithLogr(log), sync.WithPrune(true),
			sync.WithInitialState(phase, message, results, startedAt))
		if err != nil {
			return nil, err
		}
		syncCtx.Sync(ctx)
		phase, message, results = syncCtx.GetState()
		cleanup()
		log.Info("step", "n", steps, "phase", phase, "message", message)
	}
	op := &operation{Phase: string(phase), Message: message, Steps: steps, StartedAt: startedAt.UTC().Format(time.RFC3339)}
	for _, r := range results {
		op.Results = append(op.Results, result{
			Kind: r.ResourceKey.Kind, Name: r.ResourceKey.Name, SyncPhase: string(r.SyncPhase),
			HookType: string(r.HookType), HookPhase: string(r.HookPhase), Status: string(r.Status),
			Message: r.Message, Order: r.Order,
		})
	}
	return op, nil
}
