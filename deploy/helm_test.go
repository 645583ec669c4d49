package deploy_test

// The Helm chart under deploy/helm/direktiv-authz is checked with the real
// Helm, run from the Go module proxy: helm lint and helm template over each
// values file in its ci/ directory, and the rendered objects through the
// same checker as the plain manifests (deploy_test.go), through the binary's
// own config.Parse, and against what each values file asks for. A missing
// required value must fail the render with a message naming it.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/direktiv/direktiv-authz/internal/config"
	"github.com/direktiv/direktiv-authz/internal/testutil"
)

const (
	chartDir = "helm/direktiv-authz"
	// helmModule is the Helm the tests run: built from the module proxy by
	// go run, no binary download.
	helmModule = "helm.sh/helm/v4/cmd/helm@v4.3.2"
	// chartKubeVersion is the chart's kubeVersion floor (the preStop sleep
	// action needs Kubernetes 1.30).
	chartKubeVersion = "1.30.0"
	// mountRoot is where the chart mounts secrets, policies and TLS files.
	mountRoot = "/etc/direktiv-authz/"
)

// startHelm builds Helm in the background (minutes on a fresh machine,
// cached by Go afterwards). The Helm tests call it and then t.Parallel, so
// the build overlaps the package's other tests, which run first.
//
// go run builds it from the module proxy and, with -exec cp, copies the
// executable out instead of running it, so that each later call is Helm
// alone rather than go run again (a second each).
func startHelm() {
	helmOnce.Do(func() {
		go func() {
			defer close(helmReady)
			// One directory per user, reused: Helm keeps nothing there that
			// a template or a lint needs, and the copy is replaced by rename
			// each time, so a process still running the old one is unharmed.
			helmHome = filepath.Join(os.TempDir(), fmt.Sprintf("direktiv-authz-helm-%d", os.Getuid()))
			if helmErr = os.MkdirAll(helmHome, 0o700); helmErr != nil {
				return
			}
			bin := filepath.Join(helmHome, "helm")
			tmp := fmt.Sprintf("%s.%d", bin, os.Getpid())
			var out bytes.Buffer
			cmd := exec.Command("go", "run", "-exec", "cp", helmModule, tmp)
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off") // the project's settings are not Helm's
			if err := cmd.Run(); err != nil {
				helmErr = fmt.Errorf("go run -exec cp %s: %v\n%s", helmModule, err, out.String())
				return
			}
			if helmErr = os.Rename(tmp, bin); helmErr != nil {
				return
			}
			helmBin = bin
		}()
	})
}

var (
	helmOnce  sync.Once
	helmReady = make(chan struct{})
	helmHome  string // HELM_*_HOME and KUBECONFIG point inside it
	helmBin   string
	helmErr   error
)

// helmCmd runs Helm with its directories inside helmHome, so that no user
// configuration or cluster is involved. A Helm that cannot be built fails
// the test.
func helmCmd(tb testing.TB, args ...string) (stdout, stderr string, err error) {
	tb.Helper()
	startHelm()
	<-helmReady
	if helmErr != nil {
		tb.Fatalf("Helm is needed to check deploy/helm (from the Go module proxy): %v", helmErr)
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(helmBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
		"KUBECONFIG="+filepath.Join(helmHome, "no-kubeconfig"),
	)
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// helmTemplate renders the chart as release direktiv-authz in namespace
// direktiv with the values files and --set arguments given.
func helmTemplate(tb testing.TB, valuesFiles []string, set ...string) (string, error) {
	tb.Helper()
	args := []string{"template", "direktiv-authz", chartDir, "--namespace", "direktiv", "--kube-version", chartKubeVersion}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, errOut, err := helmCmd(tb, args...)
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, errOut)
	}
	return out, nil
}

// rendered is the output of helm template, by kind and name.
type rendered struct {
	text    string
	objects map[string]map[string]any // "Kind/name" -> object
}

func parseRendered(tb testing.TB, text string) rendered {
	tb.Helper()
	r := rendered{text: text, objects: map[string]map[string]any{}}
	dec := yaml.NewDecoder(strings.NewReader(text))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatalf("helm template output does not parse: %v\n%s", err, text)
		}
		if doc == nil {
			continue
		}
		kind, _ := doc["kind"].(string)
		name, _ := yamlDig(doc, "metadata")["name"].(string)
		id := kind + "/" + name
		if _, dup := r.objects[id]; dup {
			tb.Errorf("helm template renders %s twice", id)
		}
		r.objects[id] = doc
	}
	return r
}

func (r rendered) get(tb testing.TB, id string) map[string]any {
	tb.Helper()
	obj := r.objects[id]
	if obj == nil {
		tb.Fatalf("no %s rendered; rendered: %v", id, slices.Sorted(maps.Keys(r.objects)))
	}
	return obj
}

// container returns the Deployment's direktiv-authz container and pod spec.
func (r rendered) container(tb testing.TB) (ctr, pod map[string]any) {
	tb.Helper()
	pod = yamlDig(r.get(tb, "Deployment/direktiv-authz"), "spec", "template", "spec")
	ctrs := yamlList(pod["containers"])
	if len(ctrs) != 1 {
		tb.Fatalf("the Deployment has %d containers, want 1", len(ctrs))
	}
	ctr, _ = ctrs[0].(map[string]any)
	return ctr, pod
}

// chartCase is one values file of the chart's ci/ directory and what its
// rendering must hold.
type chartCase struct {
	file     string            // in ci/
	upstream string            // --upstream
	flags    map[string]string // flags that must be given with these values ("" : absent)
	env      map[string]string // variables: a value, or "secret:NAME/KEY"
	secrets  []string          // NAME/KEY of the projected secrets volume, in order
	ports    [2]int            // API, ops
	policies map[string]string // the rendered ConfigMap: nil none, else extra files beside policies/
	ingress  string            // host ("" none rendered, "*" any host)
	tlsIn    string            // the Ingress's TLS Secret
	monitor  bool              // a ServiceMonitor
	pdb      bool
}

var chartCases = []chartCase{
	{
		file:     "defaults-values.yaml",
		upstream: "http://direktiv-flow:6665",
		flags: map[string]string{
			"admin-token-file": mountRoot + "secrets/admin-token", "upstream-api-key-file": mountRoot + "secrets/upstream-api-key",
			"policies": "", "tls-cert-file": "", "tls-key-file": "", "dev": "", "strict": "",
		},
		env:     map[string]string{"DIREKTIV_AUTHZ_REDIS_URL": "secret:direktiv-authz/redis-url", "GOMEMLIMIT": "200MiB"},
		secrets: []string{"direktiv-authz/admin-token", "direktiv/apikey"},
		ports:   [2]int{8090, 9090},
		ingress: "*",
		pdb:     true,
	},
	{
		file:     "sentinel-values.yaml",
		upstream: "http://prod-direktiv-flow:6665",
		env: map[string]string{
			"REDIS_PASSWORD":           "secret:redis-auth/redis-password",
			"DIREKTIV_AUTHZ_REDIS_URL": "redis+sentinel://:$(REDIS_PASSWORD)@redis-node-0.redis-headless.redis.svc:26379,redis-node-1.redis-headless.redis.svc:26379,redis-node-2.redis-headless.redis.svc:26379/mymaster/0?sentinel_password=$(REDIS_PASSWORD)&wait_replicas=1",
		},
		secrets: []string{"authz-admin/token", "prod-direktiv/apikey"},
		ports:   [2]int{8090, 9090},
		ingress: "direktiv.example.com",
		pdb:     true,
	},
	{
		file:     "cluster-values.yaml",
		upstream: "http://direktiv-flow:6665",
		flags: map[string]string{
			"listen": ":8080", "ops-listen": ":9191", "log-level": "debug", "shutdown-grace": "40s",
			"mint-rate-per-token": "10/m", "mint-rate-per-namespace": "", "upstream-api-key-file": "",
		},
		env: map[string]string{
			"REDIS_PASSWORD":           "secret:redis-cluster/redis-password",
			"DIREKTIV_AUTHZ_REDIS_URL": "redis+cluster://:$(REDIS_PASSWORD)@redis-cluster-0.redis-cluster-headless.redis.svc:6379,redis-cluster-1.redis-cluster-headless.redis.svc:6379,redis-cluster-2.redis-cluster-headless.redis.svc:6379",
		},
		secrets: []string{"direktiv-authz/admin-token"},
		ports:   [2]int{8080, 9191},
	},
	{
		file:     "policies-values.yaml",
		upstream: "http://direktiv-flow:6665",
		flags:    map[string]string{"policies": mountRoot + "policies"},
		env:      map[string]string{"DIREKTIV_AUTHZ_REDIS_URL": "redis://redis-master.redis.svc:6379/0"},
		secrets:  []string{"direktiv-authz/admin-token", "direktiv/apikey"},
		ports:    [2]int{8090, 9090},
		policies: map[string]string{"extra.rego": "package direktiv.extra\n\nanswer := 42\n"},
		ingress:  "*",
		pdb:      true,
	},
	{
		file:     "tls-values.yaml",
		upstream: "http://direktiv-flow.direktiv.svc:6665",
		flags:    map[string]string{"tls-cert-file": mountRoot + "tls/tls.crt", "tls-key-file": mountRoot + "tls/tls.key"},
		env: map[string]string{
			"REDIS_PASSWORD":           "secret:redis/password",
			"DIREKTIV_AUTHZ_REDIS_URL": "rediss://:$(REDIS_PASSWORD)@redis-master.redis.svc:6379/0",
		},
		secrets: []string{"direktiv-authz/admin-token", "direktiv-api-key/key"},
		ports:   [2]int{8090, 9090},
		ingress: "direktiv.example.com",
		tlsIn:   "direktiv-example-com-tls",
		pdb:     true,
	},
	{
		file:     "servicemonitor-values.yaml",
		upstream: "http://direktiv-flow:6665",
		flags:    map[string]string{"policies": mountRoot + "policies"},
		env:      map[string]string{"DIREKTIV_AUTHZ_REDIS_URL": "secret:direktiv-authz/redis-url"},
		secrets:  []string{"direktiv-authz/admin-token", "direktiv/apikey"},
		ports:    [2]int{8090, 9090},
		ingress:  "*",
		monitor:  true,
		pdb:      true,
	},
}

func TestHelmChart(t *testing.T) {
	startHelm()
	t.Parallel()
	bin := mustBinarySettings(t)
	policyFiles := mustPolicyFiles(t)

	ci, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, c := range chartCases {
		listed = append(listed, c.file)
	}
	var found []string
	for _, f := range ci {
		found = append(found, filepath.Base(f))
	}
	slices.Sort(listed)
	if !slices.Equal(found, listed) {
		t.Fatalf("deploy/helm/direktiv-authz/ci has %v; chartCases lists %v: add a case for each values file", found, listed)
	}

	for _, tc := range chartCases {
		t.Run(strings.TrimSuffix(tc.file, "-values.yaml"), func(t *testing.T) {
			values := filepath.Join(chartDir, "ci", tc.file)
			if _, errOut, err := helmCmd(t, "lint", chartDir, "--strict", "--values", values, "--kube-version", chartKubeVersion); err != nil {
				t.Fatalf("helm lint: %v\n%s", err, errOut)
			}
			out, err := helmTemplate(t, []string{values})
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			r := parseRendered(t, out)

			// The checker of the plain manifests: flags and variables the
			// binary has, probes on the ops port, non-root, read-only root
			// filesystem, grace period, policy mount.
			c := newDeployChecker(bin)
			where := "helm template -f ci/" + tc.file
			c.checkText(where, []byte(out))
			c.checkYAML("rendered", where, true, []byte(out))
			c.finish()
			for _, p := range c.problems {
				t.Error(p)
			}
			if c.sidecars["rendered"] != 1 {
				t.Errorf("the checker found %d sidecars in the rendered chart, want 1", c.sidecars["rendered"])
			}

			checkChartObjects(t, r, tc, policyFiles)
			checkChartConfig(t, r, tc)
		})
	}

	t.Run("policies from the chart are policies/", func(t *testing.T) {
		out, err := helmTemplate(t, []string{filepath.Join(chartDir, "ci", "defaults-values.yaml")}, "policies.source=configMap")
		if err != nil {
			t.Fatal(err)
		}
		r := parseRendered(t, out)
		cm, err := yaml.Marshal(r.get(t, "ConfigMap/direktiv-authz-policies"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range checkPolicyConfigMap(cm, policyFiles) {
			p = strings.Replace(p, "deploy/"+policiesConfigMap, "the chart's ConfigMap (from files/policies, a link to policies/)", 1)
			t.Error(strings.TrimSuffix(p, "; regenerate with deploy/kubernetes/gen-configmap.sh"))
		}
	})

	t.Run("NOTES print how to mint the first token", func(t *testing.T) {
		out, errOut, err := helmCmd(t, "install", "direktiv-authz", chartDir, "--namespace", "direktiv", "--dry-run=client",
			"--values", filepath.Join(chartDir, "ci", "cluster-values.yaml"), "--set", "adminToken.key=token.txt")
		if err != nil {
			t.Fatalf("helm install --dry-run=client: %v\n%s", err, errOut)
		}
		_, notes, ok := strings.Cut(out, "\nNOTES:\n")
		if !ok {
			t.Fatalf("no NOTES in:\n%s", out)
		}
		for _, want := range []string{
			`kubectl -n direktiv get secret direktiv-authz -o jsonpath='{.data.token\.txt}'`,
			"port-forward service/direktiv-authz 8090:8080",
			"-X POST http://127.0.0.1:8090/api/namespaces/demo/auth/token",
			`-H "Direktiv-Token: $ADMIN_TOKEN"`,
		} {
			if !strings.Contains(notes, want) {
				t.Errorf("NOTES lack %q:\n%s", want, notes)
			}
		}
	})

	t.Run("values have every flag with the binary's defaults", func(t *testing.T) {
		var v struct {
			Settings map[string]any `yaml:"settings"`
		}
		if err := yaml.Unmarshal([]byte(mustReadFile(t, filepath.Join(chartDir, "values.yaml"))), &v); err != nil {
			t.Fatal(err)
		}
		for _, f := range slices.Sorted(maps.Keys(bin.envOf)) {
			value, ok := v.Settings[f]
			switch {
			case chartOwnValues[f] != "" && ok:
				t.Errorf("values.yaml: settings.%s is also set by %s", f, chartOwnValues[f])
			case chartOwnValues[f] != "":
			case !ok:
				t.Errorf("values.yaml: settings has no %s (the binary's --%s, default %q); add it, or say in chartOwnValues which value sets it", f, f, bin.defaults[f])
			case fmt.Sprint(value) != bin.defaults[f]:
				t.Errorf("values.yaml: settings.%s is %v, the binary's default is %q", f, value, bin.defaults[f])
			}
		}
		for f := range v.Settings {
			if _, ok := bin.envOf[f]; !ok {
				t.Errorf("values.yaml: settings.%s is not a flag of the binary", f)
			}
		}
	})
}

// chartOwnValues are the flags the chart sets from values of their own (or
// never), not from settings.
var chartOwnValues = map[string]string{
	"upstream":              "upstream.url",
	"redis-url":             "redis",
	"admin-token-file":      "adminToken",
	"upstream-api-key-file": "upstream.apiKey",
	"policies":              "policies",
	"tls-cert-file":         "tls",
	"tls-key-file":          "tls",
	"dev":                   "nothing (a local trial's in-memory store)",
	"strict":                "nothing (the default; given, it contradicts unsafe-forward-unauthenticated)",
}

// checkChartObjects checks the rendered objects against what tc asks for,
// and against each other: selectors, ports, the Ingress backend.
func checkChartObjects(t *testing.T, r rendered, tc chartCase, policyFiles map[string]string) {
	t.Helper()
	ctr, pod := r.container(t)
	flags := map[string]string{}
	for _, a := range yamlStrings(ctr["args"]) {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if _, dup := flags[name]; dup {
			t.Errorf("--%s given twice", name)
		}
		flags[name] = value
	}
	if flags["upstream"] != tc.upstream {
		t.Errorf("--upstream=%s, want %s", flags["upstream"], tc.upstream)
	}
	for f, want := range tc.flags {
		got, ok := flags[f]
		switch {
		case want == "" && ok:
			t.Errorf("--%s=%s given, want it left out", f, got)
		case want != "" && got != want:
			t.Errorf("--%s=%q, want %q", f, got, want)
		}
	}

	env := map[string]string{}
	var order []string
	for _, e := range yamlList(ctr["env"]) {
		m, _ := e.(map[string]any)
		name, _ := m["name"].(string)
		order = append(order, name)
		if ref := yamlDig(m, "valueFrom", "secretKeyRef"); ref != nil {
			env[name] = fmt.Sprintf("secret:%v/%v", ref["name"], ref["key"])
		} else {
			env[name] = fmt.Sprint(m["value"])
		}
	}
	for name, want := range tc.env {
		if env[name] != want {
			t.Errorf("env %s = %q, want %q", name, env[name], want)
		}
	}
	// Kubernetes expands $(VAR) only from variables defined before.
	if strings.Contains(env["DIREKTIV_AUTHZ_REDIS_URL"], "$(REDIS_PASSWORD)") &&
		slices.Index(order, "REDIS_PASSWORD") > slices.Index(order, "DIREKTIV_AUTHZ_REDIS_URL") {
		t.Errorf("REDIS_PASSWORD comes after DIREKTIV_AUTHZ_REDIS_URL, which names it: env order %v", order)
	}

	var secrets []string
	for _, v := range yamlList(pod["volumes"]) {
		m, _ := v.(map[string]any)
		if m["name"] != "secrets" {
			continue
		}
		for _, src := range yamlList(yamlDig(m, "projected")["sources"]) {
			sec := yamlDig(src.(map[string]any), "secret")
			for _, item := range yamlList(sec["items"]) {
				secrets = append(secrets, fmt.Sprintf("%v/%v", sec["name"], item.(map[string]any)["key"]))
			}
		}
	}
	if !slices.Equal(secrets, tc.secrets) {
		t.Errorf("secrets volume holds %v, want %v", secrets, tc.secrets)
	}

	// Ports: the container's named ports are the listen addresses', the
	// Service forwards them by name, and it selects the pods.
	ports := map[string]int{}
	for _, p := range yamlList(ctr["ports"]) {
		m, _ := p.(map[string]any)
		n, _ := m["containerPort"].(int)
		ports[fmt.Sprint(m["name"])] = n
	}
	if ports["http"] != tc.ports[0] || ports["ops"] != tc.ports[1] {
		t.Errorf("container ports %v, want http %d, ops %d", ports, tc.ports[0], tc.ports[1])
	}
	podLabels := yamlDig(r.get(t, "Deployment/direktiv-authz"), "spec", "template", "metadata", "labels")
	svc := r.get(t, "Service/direktiv-authz")
	if !selects(yamlDig(svc, "spec", "selector"), podLabels) {
		t.Errorf("the Service's selector %v does not select the pods %v", yamlDig(svc, "spec", "selector"), podLabels)
	}
	svcPorts := map[string]map[string]any{}
	for _, p := range yamlList(yamlDig(svc, "spec")["ports"]) {
		m, _ := p.(map[string]any)
		svcPorts[fmt.Sprint(m["name"])] = m
		if tp := fmt.Sprint(m["targetPort"]); ports[tp] == 0 {
			t.Errorf("Service port %v targets %q, not a port of the container", m["name"], tp)
		}
	}
	if svcPorts["http"]["port"] != tc.ports[0] || svcPorts["ops"]["port"] != tc.ports[1] {
		t.Errorf("Service ports %v, want http %d, ops %d", svcPorts, tc.ports[0], tc.ports[1])
	}
	if pod["terminationGracePeriodSeconds"] == nil {
		t.Error("no terminationGracePeriodSeconds")
	}
	if n, _ := yamlDig(ctr, "lifecycle", "preStop", "sleep")["seconds"].(int); n <= 0 {
		t.Error("no preStop sleep")
	}

	// The policies ConfigMap: the chart's copy of policies/ plus the extra
	// files, mounted when rendered.
	cmID := "ConfigMap/direktiv-authz-policies"
	cm := r.objects[cmID]
	switch {
	case tc.policies == nil && cm != nil:
		t.Errorf("%s rendered, want none", cmID)
	case tc.policies != nil:
		want := maps.Clone(policyFiles)
		maps.Copy(want, tc.policies)
		data := yamlDig(r.get(t, cmID), "data")
		for _, name := range slices.Sorted(maps.Keys(want)) {
			if got, ok := data[name].(string); !ok || got != want[name] {
				t.Errorf("%s: %s differs from its source (got %d bytes, want %d)", cmID, name, len(got), len(want[name]))
			}
		}
		for name := range data {
			if _, ok := want[name]; !ok {
				t.Errorf("%s: %s is not a policy file", cmID, name)
			}
		}
	}

	// The Ingress sends "/" to the Service's API port.
	ing := r.objects["Ingress/direktiv-authz"]
	switch {
	case tc.ingress == "" && ing != nil:
		t.Error("an Ingress rendered, want none")
	case tc.ingress != "":
		checkChartIngress(t, r.get(t, "Ingress/direktiv-authz"), tc, svcPorts)
	}

	if sm := r.objects["ServiceMonitor/direktiv-authz"]; !tc.monitor && sm != nil {
		t.Error("a ServiceMonitor rendered, want none")
	} else if tc.monitor {
		sm := r.get(t, "ServiceMonitor/direktiv-authz")
		if !selects(yamlDig(sm, "spec", "selector", "matchLabels"), yamlDig(svc, "metadata", "labels")) {
			t.Errorf("the ServiceMonitor's selector does not select the Service's labels")
		}
		eps := yamlList(yamlDig(sm, "spec")["endpoints"])
		if len(eps) != 1 {
			t.Fatalf("ServiceMonitor endpoints %v, want 1", eps)
		}
		ep := eps[0].(map[string]any)
		if ep["port"] != "ops" || ep["path"] != "/metrics" || svcPorts["ops"] == nil {
			t.Errorf("ServiceMonitor scrapes port %v path %v, want the Service's ops port, /metrics", ep["port"], ep["path"])
		}
		if yamlDig(sm, "metadata", "labels")["release"] != "kube-prometheus-stack" {
			t.Errorf("ServiceMonitor labels %v lack metrics.serviceMonitor.labels", yamlDig(sm, "metadata", "labels"))
		}
	}

	if pdb := r.objects["PodDisruptionBudget/direktiv-authz"]; !tc.pdb && pdb != nil {
		t.Error("a PodDisruptionBudget rendered, want none")
	} else if tc.pdb {
		pdb := r.get(t, "PodDisruptionBudget/direktiv-authz")
		if !selects(yamlDig(pdb, "spec", "selector", "matchLabels"), podLabels) {
			t.Errorf("the PodDisruptionBudget does not select the pods")
		}
	}
}

func checkChartIngress(t *testing.T, ing map[string]any, tc chartCase, svcPorts map[string]map[string]any) {
	t.Helper()
	ann := yamlDig(ing, "metadata", "annotations")
	for k, want := range map[string]string{
		"nginx.ingress.kubernetes.io/proxy-body-size":       "128m",
		"nginx.ingress.kubernetes.io/proxy-read-timeout":    "7200",
		"nginx.ingress.kubernetes.io/proxy-send-timeout":    "7200",
		"nginx.ingress.kubernetes.io/proxy-connect-timeout": "7200",
	} {
		if ann[k] != want {
			t.Errorf("Ingress annotation %s = %v, want %q", k, ann[k], want)
		}
	}
	if https := ann["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"; https != (tc.flags["tls-cert-file"] != "") {
		t.Errorf("Ingress backend-protocol HTTPS is %v, the sidecar serves HTTPS: %v", https, tc.flags["tls-cert-file"] != "")
	}
	if yamlDig(ing, "spec")["ingressClassName"] != "nginx" {
		t.Errorf("ingressClassName %v, want nginx", yamlDig(ing, "spec")["ingressClassName"])
	}
	rules := yamlList(yamlDig(ing, "spec")["rules"])
	if len(rules) != 1 {
		t.Fatalf("Ingress rules %v, want 1", rules)
	}
	rule := rules[0].(map[string]any)
	if host, _ := rule["host"].(string); tc.ingress != "*" && host != tc.ingress {
		t.Errorf("Ingress host %q, want %q", host, tc.ingress)
	}
	paths := yamlList(yamlDig(rule, "http")["paths"])
	if len(paths) != 1 {
		t.Fatalf("Ingress paths %v, want only /", paths)
	}
	p := paths[0].(map[string]any)
	backend := yamlDig(p, "backend", "service")
	port := yamlDig(backend, "port")
	if p["path"] != "/" || p["pathType"] != "Prefix" || backend["name"] != "direktiv-authz" ||
		(port["name"] != "http" && port["number"] != svcPorts["http"]["port"]) {
		t.Errorf("Ingress sends %v %v to %v, want / Prefix to the Service direktiv-authz, port http", p["path"], p["pathType"], backend)
	}
	var tlsSecrets []string
	for _, tl := range yamlList(yamlDig(ing, "spec")["tls"]) {
		m := tl.(map[string]any)
		tlsSecrets = append(tlsSecrets, fmt.Sprint(m["secretName"]))
		if hosts := yamlStrings(m["hosts"]); !slices.Equal(hosts, []string{tc.ingress}) {
			t.Errorf("Ingress TLS hosts %v, want [%s]", hosts, tc.ingress)
		}
	}
	if want := []string{tc.tlsIn}; tc.tlsIn != "" && !slices.Equal(tlsSecrets, want) || tc.tlsIn == "" && tlsSecrets != nil {
		t.Errorf("Ingress TLS Secrets %v, want %q", tlsSecrets, tc.tlsIn)
	}
	if redirect := ann["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"; redirect != (tc.tlsIn != "") {
		t.Errorf("Ingress force-ssl-redirect %v with TLS Secret %q", redirect, tc.tlsIn)
	}
}

// checkChartConfig runs the rendered command line and environment through
// the binary's own config.Parse, with the mounted files in a temp dir and
// Secret values made up, so that the sidecar would accept what the chart
// starts it with.
func checkChartConfig(t *testing.T, r rendered, tc chartCase) {
	t.Helper()
	ctr, _ := r.container(t)
	root := t.TempDir()
	certPEM, keyPEM := testutil.NewCA(t).Issue(t, "direktiv-authz")
	for f, content := range map[string][]byte{
		"secrets/admin-token":      []byte("made-up-admin-token"),
		"secrets/upstream-api-key": []byte("made-up-upstream-api-key"),
		"tls/tls.crt":              certPEM,
		"tls/tls.key":              keyPEM,
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	local := func(s string) string { return strings.ReplaceAll(s, mountRoot, root+"/") }
	var args []string
	for _, a := range yamlStrings(ctr["args"]) {
		args = append(args, local(a))
	}
	vars := map[string]string{}
	var environ []string
	for _, e := range yamlList(ctr["env"]) {
		m := e.(map[string]any)
		name := fmt.Sprint(m["name"])
		value := fmt.Sprint(m["value"])
		if ref := yamlDig(m, "valueFrom", "secretKeyRef"); ref != nil {
			value = "made-up-password"
			if name == "DIREKTIV_AUTHZ_REDIS_URL" {
				value = "redis://:made-up-password@redis:6379/0"
			}
		}
		value = k8sVarRef.ReplaceAllStringFunc(value, func(ref string) string {
			if v, ok := vars[ref[2:len(ref)-1]]; ok {
				return v
			}
			return ref
		})
		vars[name] = value
		environ = append(environ, name+"="+local(value))
	}
	cfg, err := config.Parse(args, environ, io.Discard)
	if err != nil {
		t.Fatalf("the binary refuses the rendered settings: %v\nargs %q\nenv %q", err, args, environ)
	}
	if cfg.Upstream != tc.upstream {
		t.Errorf("the binary runs with upstream %s, want %s", cfg.Upstream, tc.upstream)
	}
	if cfg.AdminToken != "made-up-admin-token" {
		t.Errorf("the binary read admin token %q from the mounted file", cfg.AdminToken)
	}
	wantKey := ""
	if len(tc.secrets) > 1 { // the second is the API key's
		wantKey = "made-up-upstream-api-key"
	}
	if cfg.UpstreamKey != wantKey {
		t.Errorf("the binary read upstream API key %q, want %q", cfg.UpstreamKey, wantKey)
	}
	if strings.Contains(cfg.RedisURL, "$(") {
		t.Errorf("the Redis URL %q keeps an unexpanded reference", cfg.RedisURL)
	}
}

// selects reports whether every label of selector is in labels.
func selects(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestHelmChartRefuses renders the chart with bad values: each must fail at
// render time with a message naming the value.
func TestHelmChartRefuses(t *testing.T) {
	startHelm()
	t.Parallel()
	defaults := filepath.Join(chartDir, "ci", "defaults-values.yaml")
	tests := []struct {
		name  string
		files []string
		set   []string
		want  []string // substrings of Helm's error
	}{
		{"no values", nil, nil, []string{"adminToken.existingSecret is required"}},
		{"no Redis URL", nil, []string{"adminToken.existingSecret=a"}, []string{"redis.url or redis.existingSecret is required"}},
		{"two Redis URLs", []string{defaults}, []string{"redis.url=redis://r:6379"}, []string{"redis.url and redis.existingSecret"}},
		{"not a Redis URL", nil, []string{"adminToken.existingSecret=a", "redis.url=http://r:6379"}, []string{"/redis/url"}},
		{"password without its place", nil, []string{"adminToken.existingSecret=a", "redis.url=redis://r:6379", "redis.password.existingSecret=p"}, []string{"redis.password.existingSecret", "$(REDIS_PASSWORD)"}},
		{"place without a password", nil, []string{"adminToken.existingSecret=a", "redis.url=redis://:$(REDIS_PASSWORD)@r:6379"}, []string{"redis.password.existingSecret is not set"}},
		{"unknown setting", []string{defaults}, []string{"settings.listn=:1"}, []string{"listn"}},
		{"a setting with a value of its own", []string{defaults}, []string{"settings.upstream=http://x"}, []string{"settings", "upstream"}},
		{"bad policy source", []string{defaults}, []string{"policies.source=dir"}, []string{"/policies/source"}},
		{"policy files with embedded policies", []string{defaults}, []string{"policies.files.a\\.rego=package a"}, []string{"policies.source"}},
		{"not a Rego file name", []string{defaults}, []string{"policies.source=configMap", "policies.files.a\\.txt=x"}, []string{"'a.txt' does not match", "rego"}},
		{"grace period too short", []string{defaults}, []string{"settings.shutdown-grace=60s"}, []string{"terminationGracePeriodSeconds 45", "settings.shutdown-grace 60s"}},
		{"ops listener off", []string{defaults}, []string{"settings.ops-listen=off"}, []string{"ops-listen"}},
		{"a DIREKTIV_AUTHZ_ variable", []string{defaults}, []string{"extraEnv[0].name=DIREKTIV_AUTHZ_LISTEN", "extraEnv[0].value=:1"}, []string{"extraEnv DIREKTIV_AUTHZ_LISTEN"}},
		{"TLS without a host", []string{defaults}, []string{"ingress.certificate=tls"}, []string{"ingress.host"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := helmTemplate(t, tt.files, tt.set...)
			if err == nil {
				t.Fatalf("helm template succeeded, want an error naming %q:\n%s", tt.want, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not name %q: %v", w, err)
				}
			}
		})
	}
}
