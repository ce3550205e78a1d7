package main

import "github.com/farmedge/edge/admin"

// orderEnded is tlsmgr's OnOrder: an order's end as a recent event.
func (s *server) orderEnded(name string, renewal bool, err error) {
	ev := admin.Event{Kind: admin.EventObtained, Name: name}
	switch {
	case err != nil:
		ev.Kind, ev.Detail = admin.EventFailed, err.Error()
		if renewal {
			ev.Detail = "renewal: " + ev.Detail
		}
	case renewal:
		ev.Kind = admin.EventRenewed
	}
	s.events.Add(ev)
}

// exportResult is the dispatcher's OnResult: a delivery attempt as a
// recent event.
func (s *server) exportResult(name, target string, err error) {
	ev := admin.Event{Kind: admin.EventExported, Name: name, Target: target}
	if err != nil {
		ev.Kind, ev.Detail = admin.EventExportFailed, err.Error()
	}
	s.events.Add(ev)
}
