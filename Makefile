# xgate — the two commands that matter, each doing its own set-up on Debian (run as root):
#   make demo   start xgate with its embedded defaults and connect real WireGuard clients
#   make test   every test: unit, cross-implementation and network-namespace interop
#   make bench  the datapath benchmark beside boringtun-cli and wireguard-go (bench-results/)
#   make surge  the login-surge loadtest (10,000 users over 20 s) and the capacity report
#   make fuzz   longer property campaigns over every input path (bounded at 30 minutes)
#   make screenshots  the web console's pages, taken by its browser tests, into docs/

CARGO ?= cargo
# Peers the tests and the demo run against (pinned so results are comparable).
BORINGTUN_VERSION := 0.7.1
APT_PACKAGES := wireguard-tools wireguard-go iproute2 iputils-ping util-linux procps gcc make ca-certificates openssl curl systemd sqlite3 \
	strongswan-charon strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins \
	libcharon-extauth-plugins \
	iptables ethtool \
	postgresql keepalived \
	chromium chromium-driver
# (postgresql: the registry's tests run against SQLite and a throwaway PostgreSQL server;
# keepalived: the cluster's failover test moves a service address between two nodes;
# chromium + chromium-driver: the web console's tests drive a real browser over WebDriver.)
# What only the benchmark needs on top.
BENCH_PACKAGES := iperf3 valgrind linux-perf git

.PHONY: all deps bench-deps apt-packages build install demo test fuzz bench surge lint clean screenshots

all: build

# Prints the Debian packages the project needs (used by .ci/run).
apt-packages:
	@echo $(APT_PACKAGES)

# Installs only what is missing: Debian packages, then boringtun-cli from crates.io.
deps:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust 1.89 or newer (rustup)"; exit 1; }
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@if ! boringtun-cli --version 2>/dev/null | grep -q "$(BORINGTUN_VERSION)" && \
	    ! $$HOME/.cargo/bin/boringtun-cli --version 2>/dev/null | grep -q "$(BORINGTUN_VERSION)"; then \
		$(CARGO) install boringtun-cli --version $(BORINGTUN_VERSION) --locked; \
	fi

# The benchmark's own tools (iperf3, valgrind, perf), only what is missing.
bench-deps: deps
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

build:
	$(CARGO) build --release --bins

# The binaries and, where systemd is, its unit (`systemctl enable --now xgate@xgate0`).
# BIN_DIR: where the binaries are taken from (the README test installs the ones cargo built
# for it, with CARGO=true: cargo holds the build lock while tests run).
BIN_DIR ?= target/release
install: build
	install -m 0755 $(BIN_DIR)/xgate /usr/local/bin/xgate
	install -m 0755 $(BIN_DIR)/xgate-userspace /usr/local/bin/xgate-userspace
	if [ -d /etc/systemd/system ]; then \
		install -m 0644 packaging/systemd/xgate@.service /etc/systemd/system/xgate@.service; \
		systemctl daemon-reload 2>/dev/null || true; \
	fi

# The demo ends with a short login surge (3,000 simulated users) and a sizing line; its
# results go to a scratch directory, not bench-results/.
demo: deps build
	./target/release/xgate-demo
	./target/release/xgate-loadtest run --scenario demo --out /tmp/xgate-demo-results

# Bounded: about 5 minutes on a 2-core machine (every load loop has a packet count and a
# deadline). Writes bench-results/datapath-<date>-<commit>.json and bench-results/datapath.md.
bench: bench-deps build
	./target/release/xgate-bench run --out bench-results

# Bounded: each scenario's own bound (about 40 s of load for the surges, 15 s for step-10k,
# 90-110 s for the 100,000-user runs) plus set-up, under 5 minutes each, about 10 in all.
# surge-scraped scrapes /metrics 200 times a second; the report compares it with surge.
# failover and failover-no-take-over: two nodes on a throwaway PostgreSQL behind keepalived,
# node A killed mid-surge (about 1 minute each).
# Writes bench-results/loadtest-*-xgate-<date>-<commit>.json, capacity.md and its plots.
surge: deps build
	./target/release/xgate-loadtest run --scenario surge
	./target/release/xgate-loadtest run --scenario surge-mixed
	./target/release/xgate-loadtest run --scenario step-10k
	./target/release/xgate-loadtest run --scenario ramp-100k
	./target/release/xgate-loadtest run --scenario reconnect-100k
	./target/release/xgate-loadtest run --scenario surge-scraped
	./target/release/xgate-loadtest run --scenario failover
	./target/release/xgate-loadtest run --scenario failover-no-take-over --report

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps lint
	$(CARGO) test --workspace

# The web console's browser tests, saving what the browser showed into docs/screenshots.
screenshots: deps
	XGATE_SCREENSHOTS=$(CURDIR)/docs/screenshots $(CARGO) test -p xgate --test web_console --test web_console_pages

# Longer property campaigns: every campaign `make test` runs, XGATE_FUZZ_SCALE (default 10)
# times as long, bounded at 30 minutes; prints each campaign's cases and the total.
fuzz: deps
	@mkdir -p target; XGATE_FUZZ_SCALE=$${XGATE_FUZZ_SCALE:-10} timeout 1800 \
		$(CARGO) test --workspace fuzz_ -- --nocapture > target/fuzz.log 2>&1; rc=$$?; \
	grep '^fuzz ' target/fuzz.log; \
	awk '/^fuzz /{n+=$$3} END{printf "fuzz total: %d cases\n", n}' target/fuzz.log; \
	if [ $$rc -ne 0 ]; then grep -E 'panicked|smallest failing' target/fuzz.log; \
		echo "fuzz: FAILED (exit $$rc; 124 = the 30-minute bound); see target/fuzz.log"; exit $$rc; fi

clean:
	$(CARGO) clean
