# xgate — the two commands that matter, each doing its own set-up on Debian (run as root):
#   make demo   start xgate with its embedded defaults and connect real WireGuard clients
#   make test   every test: unit, cross-implementation and network-namespace interop

CARGO ?= cargo
# Peers the tests and the demo run against (pinned so results are comparable).
BORINGTUN_VERSION := 0.7.1
APT_PACKAGES := wireguard-tools wireguard-go iproute2 iputils-ping util-linux procps gcc make ca-certificates

.PHONY: all deps apt-packages build demo test lint clean

all: build

# Prints the Debian packages the project needs (used by .ci/run).
apt-packages:
	@echo $(APT_PACKAGES)

# Installs only what is missing: Debian packages, then boringtun-cli from crates.io.
deps:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust 1.85 or newer (rustup)"; exit 1; }
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@if ! boringtun-cli --version 2>/dev/null | grep -q "$(BORINGTUN_VERSION)" && \
	    ! $$HOME/.cargo/bin/boringtun-cli --version 2>/dev/null | grep -q "$(BORINGTUN_VERSION)"; then \
		$(CARGO) install boringtun-cli --version $(BORINGTUN_VERSION) --locked; \
	fi

build:
	$(CARGO) build --release --bins

demo: deps build
	./target/release/xgate-demo

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps lint
	$(CARGO) test --workspace

clean:
	$(CARGO) clean
