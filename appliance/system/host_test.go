package system

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"toride/appliance/config"
	"toride/appliance/health"
	"toride/dataplane/dhcp4"
	"toride/dataplane/link"
	"toride/dataplane/route"
)

// kernel is the box's links and torided's routes in memory.
type kernel struct {
	mu     sync.Mutex
	addrs  map[string][]netip.Prefix
	routes []route.Route
	leased int // AddLeasedAddress calls
}

func (k *kernel) Get(name string) (link.State, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.addrs[name]; !ok {
		return link.State{}, link.ErrNotFound
	}
	return link.State{Name: name, Addresses: slices.Clone(k.addrs[name])}, nil
}
func (k *kernel) SetMTU(string, int) error { return nil }
func (k *kernel) SetUp(string, bool) error { return nil }
func (k *kernel) Watch(ctx context.Context, _ func(link.Event)) error {
	<-ctx.Done()
	return nil
}
func (k *kernel) AddAddress(name string, p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !slices.Contains(k.addrs[name], p) {
		k.addrs[name] = append(k.addrs[name], p)
	}
	return nil
}
func (k *kernel) AddLeasedAddress(name string, p netip.Prefix, valid time.Duration) error {
	if valid <= 0 {
		return errors.New("a leased address without a lifetime")
	}
	k.mu.Lock()
	k.leased++
	k.mu.Unlock()
	return k.AddAddress(name, p)
}
func (k *kernel) DelAddress(name string, p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.addrs[name] = slices.DeleteFunc(k.addrs[name], func(a netip.Prefix) bool { return a == p })
	return nil
}
func (k *kernel) Replace(r route.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !slices.Contains(k.routes, r) {
		k.routes = append(k.routes, r)
	}
	return nil
}
func (k *kernel) Delete(r route.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.routes = slices.DeleteFunc(k.routes, func(x route.Route) bool { return x == r })
	return nil
}
func (k *kernel) List() ([]route.Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.routes), nil
}

// dhcpServer hands the test the report function of each DHCP client Host starts.
type dhcpServer struct {
	started chan func(*dhcp4.Lease)
	running sync.WaitGroup
}

func (d *dhcpServer) run(ctx context.Context, _, _ string, _ *slog.Logger, report func(*dhcp4.Lease)) {
	d.running.Add(1)
	defer d.running.Done()
	d.started <- report
	<-ctx.Done()
}

// TestDHCPLease: an interface configured for DHCP waits for its lease (pending), then carries the lease's address,
// its default route (metric 210, below a static one) and its name servers; a changed lease moves them, a lost one
// takes them away, and a commit without DHCP stops the client and removes what it put there.
func TestDHCPLease(t *testing.T) {
	k := &kernel{addrs: map[string][]netip.Prefix{"eth0": nil}}
	srv := &dhcpServer{started: make(chan func(*dhcp4.Lease), 1)}
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	hl := health.New()
	h := NewHost(HostOptions{Links: k, Routes: k, ResolvConf: resolv, DHCP: srv.run, Health: hl,
		Logger: slog.New(slog.DiscardHandler)})
	empty := &config.Config{}
	withDHCP := config.Default().WithDefaults()
	if err := h.Apply(context.Background(), empty, withDHCP); err != nil {
		t.Fatal(err)
	}
	var report func(*dhcp4.Lease)
	select {
	case report = <-srv.started:
	case <-time.After(5 * time.Second):
		t.Fatal("no DHCP client started on eth0")
	}
	if st, _ := hl.Get("system"); st.State != health.Pending || !strings.Contains(st.Message, "eth0 waits for a DHCP lease") {
		t.Errorf("health before the lease: %+v", st)
	}

	check := func(step string, addrs []string, router, dns string) {
		t.Helper()
		var want []netip.Prefix
		for _, a := range addrs {
			want = append(want, netip.MustParsePrefix(a))
		}
		k.mu.Lock()
		got, routes := slices.Clone(k.addrs["eth0"]), slices.Clone(k.routes)
		k.mu.Unlock()
		if !slices.Equal(got, want) {
			t.Errorf("%s: eth0 has %v, want %v", step, got, want)
		}
		var wantRoutes []route.Route
		if router != "" {
			wantRoutes = []route.Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr(router), Metric: 210}}
		}
		if !slices.Equal(routes, wantRoutes) {
			t.Errorf("%s: routes %v, want %v", step, routes, wantRoutes)
		}
		if dns != "" {
			if data, _ := os.ReadFile(resolv); !strings.Contains(string(data), "nameserver "+dns+"\n") {
				t.Errorf("%s: resolver file lacks %s:\n%s", step, dns, data)
			}
		}
	}
	lease := func(addr, router, dns string) *dhcp4.Lease {
		return &dhcp4.Lease{Address: netip.MustParsePrefix(addr), Router: netip.MustParseAddr(router),
			DNS: []netip.Addr{netip.MustParseAddr(dns)}, Domain: "branch.example", Obtained: time.Now(), Duration: time.Hour}
	}
	report(lease("192.0.2.10/24", "192.0.2.1", "192.0.2.53"))
	check("first lease", []string{"192.0.2.10/24"}, "192.0.2.1", "192.0.2.53")
	if st, _ := hl.Get("system"); st.State != health.OK {
		t.Errorf("health with the lease: %+v", st)
	}
	if data, _ := os.ReadFile(resolv); !strings.Contains(string(data), "search branch.example\n") {
		t.Errorf("resolver file lacks the lease's domain:\n%s", data)
	}
	// A renewal: the same address, its lifetime moved.
	report(lease("192.0.2.10/24", "192.0.2.1", "192.0.2.53"))
	check("renewed lease", []string{"192.0.2.10/24"}, "192.0.2.1", "192.0.2.53")
	if k.leased != 2 {
		t.Errorf("the address was put on with a lifetime %d times, want 2 (the lease, its renewal)", k.leased)
	}
	report(lease("192.0.2.11/24", "192.0.2.254", "192.0.2.54"))
	check("changed lease", []string{"192.0.2.11/24"}, "192.0.2.254", "192.0.2.54")
	report(nil)
	check("lost lease", nil, "", "")
	report(lease("192.0.2.10/24", "192.0.2.1", "192.0.2.53"))
	check("lease again", []string{"192.0.2.10/24"}, "192.0.2.1", "")

	// A configured name server wins over the lease's.
	static := withDHCP.Clone()
	static.System.DNS.NameServers = []netip.Addr{netip.MustParseAddr("198.51.100.53")}
	if err := h.Apply(context.Background(), withDHCP, static); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(resolv); strings.Contains(string(data), "192.0.2.53") || !strings.Contains(string(data), "198.51.100.53") {
		t.Errorf("resolver file with a configured name server:\n%s", data)
	}

	// DHCP off: the client stops, its address and route go; a late report changes nothing.
	off := static.Clone()
	off.System.Interfaces["eth0"].DHCP = false
	off.System.Interfaces["eth0"].Addresses = []netip.Prefix{netip.MustParsePrefix("192.168.1.1/24")}
	if err := h.Apply(context.Background(), static, off); err != nil {
		t.Fatal(err)
	}
	report(lease("192.0.2.12/24", "192.0.2.1", "192.0.2.53"))
	check("DHCP off", []string{"192.168.1.1/24"}, "", "")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	srv.running.Wait()
}
