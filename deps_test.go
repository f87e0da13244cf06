package main

import (
	"os/exec"
	"strings"
	"testing"
)

// warden writes its own Prometheus exposition (proxy/metrics.go): the
// client library and protobuf made up a third of the binary and about 3 MB
// of every pod's memory. They may serve tests (the reference parser checks
// the output), never the binary.
func TestBinaryDependsOnNoPrometheusLibraryOrProtobuf(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if !containsPrefix(deps, "github.com/valyala/fasthttp") {
		t.Fatalf("go list -deps does not list fasthttp: the check would see nothing\n%s", out)
	}
	for _, banned := range []string{"github.com/prometheus/", "google.golang.org/protobuf", "github.com/golang/protobuf"} {
		for _, d := range deps {
			if strings.HasPrefix(d, banned) {
				t.Errorf("the binary depends on %s", d)
			}
		}
	}
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}
