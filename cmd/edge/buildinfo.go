package main

import "github.com/prometheus/client_golang/prometheus"

// newBuildInfoGauge is edge_build_info{version,commit,goversion}, always 1:
// the labels are what `edge version` prints (readBuildInfo), so a dashboard
// can show which build each edge runs and join it onto other series.
func newBuildInfoGauge() prometheus.Gauge {
	bi := readBuildInfo()
	commit := bi.Commit
	if commit != "" && bi.Modified {
		commit += "+modified"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "edge_build_info",
		Help: "Always 1; the labels name the build: version, VCS commit (+modified for a dirty tree) and Go version.",
		ConstLabels: prometheus.Labels{
			"version":   bi.Version,
			"commit":    commit,
			"goversion": bi.GoVersion,
		},
	})
	g.Set(1)
	return g
}
