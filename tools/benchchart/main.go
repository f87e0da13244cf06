// Command benchchart draws the chart of scripts/bench.sh's results: proxy
// CPU time per proxied request and per refused request, and peak memory, for
// each proxy, as an SVG (no dependencies, readable in any browser and on
// GitHub).
//
//	go run ./tools/benchchart -in bench-results/load.tsv -out bench-results/cpu.svg
package main

import (
	"bufio"
	"flag"
	"fmt"
	"html"
	"log"
	"os"
	"strconv"
	"strings"
)

type row struct {
	target           string
	cpu, storm, rssM float64
}

func main() {
	in := flag.String("in", "bench-results/load.tsv", "results from scripts/bench.sh")
	out := flag.String("out", "bench-results/cpu.svg", "SVG to write")
	flag.Parse()
	rows, err := read(*in)
	if err != nil {
		log.Fatal(err)
	}
	if len(rows) == 0 {
		log.Fatalf("%s: no proxy rows", *in)
	}
	if err := os.WriteFile(*out, []byte(draw(rows)), 0o644); err != nil { //nolint:gosec // a chart, world-readable on purpose
		log.Fatal(err)
	}
}

// read parses load.tsv; rows without CPU figures (direct) are left out.
func read(path string) ([]row, error) {
	f, err := os.Open(path) //nolint:gosec // G304: the results file named on the command line
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []row
	sc := bufio.NewScanner(f)
	for line := 0; sc.Scan(); line++ {
		fields := strings.Split(sc.Text(), "\t")
		if line == 0 || len(fields) < 8 || fields[2] == "-" {
			continue
		}
		cpu, err1 := strconv.ParseFloat(fields[2], 64)
		storm, err2 := strconv.ParseFloat(fields[5], 64)
		rss, err3 := strconv.ParseFloat(fields[7], 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("%s: line %d: bad numbers: %q", path, line+1, sc.Text())
		}
		rows = append(rows, row{fields[0], cpu, storm, rss})
	}
	return rows, sc.Err()
}

var colors = []string{"#2f6f4f", "#c0504d", "#4f81bd", "#8064a2", "#f79646"}

// draw lays out three panels of horizontal bars, one bar per proxy.
func draw(rows []row) string {
	const (
		width, panelW, left = 900, 280, 20
		barH, gap, top      = 22, 6, 60
	)
	panels := []struct {
		title string
		value func(row) float64
		unit  string
	}{
		{"CPU per proxied request", func(r row) float64 { return r.cpu }, "µs"},
		{"CPU per refused request (401)", func(r row) float64 { return r.storm }, "µs"},
		{"peak memory, 64 connections", func(r row) float64 { return r.rssM }, "MiB"},
	}
	height := top + len(rows)*(barH+gap) + 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">warden and nginx on the same load (lower is better)</text>`+"\n", left)
	for p, panel := range panels {
		x0 := left + p*(panelW+20)
		maxV := 0.0
		for _, r := range rows {
			maxV = max(maxV, panel.value(r))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x0, top-12, html.EscapeString(panel.title))
		for i, r := range rows {
			y := top + i*(barH+gap)
			v := panel.value(r)
			w := 0.0
			if maxV > 0 {
				w = v / maxV * float64(panelW-130)
			}
			fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", x0, y+16, html.EscapeString(r.target))
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0+60, y, w, barH, colors[i%len(colors)])
			fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s %s</text>`+"\n", float64(x0+66)+w, y+16, strconv.FormatFloat(v, 'f', 1, 64), panel.unit)
		}
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">make bench (scripts/bench.sh): wrk -c64 on loopback; proxy and upstream pinned to one CPU; medians of the rounds.</text>`+"\n", left, height-18)
	b.WriteString("</svg>\n")
	return b.String()
}
