package main

import (
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// fleetOrigin is the registry a fleet's image comes from, as the fleet
// reaches it: docker-registry and, with token auth, its token service (as
// quay.io's and Docker Hub's are), each behind a counting, delaying proxy
// and a byte-counting relay, so that everything counted is what the origin
// serves.
type fleetOrigin struct {
	host    string // the registry, as the machines and the cache reach it
	regHost string // the registry itself, for uncounted pushes
	push    updatecachetest.HTTPOptions
	servers []countedServer // the registry, then the token service if any
	stops   []func()
}

// countedServer is one server of the origin and its counters.
type countedServer struct {
	proxy *updatecachetest.Registry
	wire  *wireCounter
}

// Origin auth kinds (-fleet-auth).
const (
	authNone  = "none"  // the bench's registry, which asks for nothing
	authToken = "token" // anonymous pull tokens, as public registries give
)

// startFleetOrigin returns the origin for auth: the bench's registry for
// authNone; for authToken a new docker-registry with `auth: token`, whose
// issuer gives anonymous clients pull tokens and the publisher any.
func (b *bench) startFleetOrigin(auth string) (o *fleetOrigin, err error) {
	switch auth {
	case authNone:
		return &fleetOrigin{host: b.wire.host(), regHost: b.reg.host, servers: []countedServer{{b.proxy, b.wire}}}, nil
	case authToken:
	default:
		return nil, fmt.Errorf("origin auth %q: want %s or %s", auth, authNone, authToken)
	}
	o = &fleetOrigin{push: updatecachetest.HTTPOptions{Username: "publisher", Password: "publisher"}}
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	issuer, err := updatecachetest.NewTokenIssuer("fleet-origin", "fleet-origin-tokens")
	if err != nil {
		return o, err
	}
	issuer.AddUser(o.push.Username, o.push.Password)
	tokens, err := o.count(updatecachetest.StartServer(issuer))
	if err != nil {
		return o, err
	}
	reg, err := startRegistry(filepath.Join(b.work, "fleet", "origin"), testtool.RegistryConfig{Token: &testtool.TokenAuth{
		Realm: "http://" + tokens.host() + "/token", Service: issuer.Service(), Issuer: issuer.Issuer(),
		RootCertBundle: issuer.RootCertBundle()}})
	if err != nil {
		return o, err
	}
	o.stops = append(o.stops, reg.stop)
	o.regHost = reg.host
	front, err := o.count(updatecachetest.StartProxy(&url.URL{Scheme: "http", Host: reg.host}))
	if err != nil {
		return o, err
	}
	o.host = front.host()
	// The registry first, as the servers' order says.
	o.servers[0], o.servers[1] = o.servers[1], o.servers[0]
	return o, nil
}

// count puts a relay in front of the counting proxy p and adds both to the
// origin's servers.
func (o *fleetOrigin) count(p *updatecachetest.Registry, err error) (*wireCounter, error) {
	if err != nil {
		return nil, err
	}
	o.stops = append(o.stops, p.Stop)
	w, err := startWireCounter(p.Host())
	if err != nil {
		return nil, err
	}
	o.stops = append(o.stops, w.close)
	o.servers = append(o.servers, countedServer{p, w})
	return w, nil
}

// close stops what startFleetOrigin started, last first.
func (o *fleetOrigin) close() {
	for i := len(o.stops) - 1; i >= 0; i-- {
		o.stops[i]()
	}
}

// delay makes every server of the origin wait d before each answer: it
// is far from the machines.
func (o *fleetOrigin) delay(d time.Duration) (undo func()) {
	for _, s := range o.servers {
		s.proxy.AddFault(updatecachetest.Fault{Delay: d})
	}
	return func() {
		for _, s := range o.servers {
			s.proxy.ClearFaults()
		}
	}
}

// reset zeroes the counters.
func (o *fleetOrigin) reset() error {
	for _, s := range o.servers {
		if err := s.wire.reset(); err != nil {
			return err
		}
		s.proxy.Reset()
	}
	return nil
}

// originCounts are the requests all the origin's servers saw.
type originCounts struct {
	Total, Ping, Token, ManifestHEAD, ManifestGET, BlobGET int
}

// Other counts the requests of no kind above.
func (c originCounts) Other() int {
	return c.Total - c.Ping - c.Token - c.ManifestHEAD - c.ManifestGET - c.BlobGET
}

// stats returns the origin's counts since reset.
func (o *fleetOrigin) stats() (originCounts, wireStats, error) {
	var c originCounts
	var w wireStats
	for _, s := range o.servers {
		ws, err := s.wire.stats()
		if err != nil {
			return c, w, err
		}
		w.Down += ws.Down
		w.Up += ws.Up
		w.Conns += ws.Conns
		w.TLSProbes += ws.TLSProbes
		w.ProbeDown += ws.ProbeDown
		w.ProbeUp += ws.ProbeUp
		n := s.proxy.Counts()
		c.Total += n.Total
		c.Ping += n.Ping
		c.Token += n.Token
		c.ManifestHEAD += n.ManifestHEAD
		c.ManifestGET += n.ManifestGET
		c.BlobGET += n.BlobGET
	}
	return c, w, nil
}
