# hacron's build. `make test` is what CI runs (.ci/run); `make unit` is the
# quick round while editing.
GO      ?= go
# The version in Debian's form (dist/version.sh): the binary says the same
# as the package.
VERSION ?= $(shell dist/version.sh)
# Expanded once: the binary and the packages of one make carry one version
# even if a commit lands while it runs.
VERSION := $(VERSION)
LDFLAGS := -X main.version=$(VERSION)
ZK_JAR  := /usr/share/java/zookeeper.jar

.PHONY: build test test-alone unit lint vet man deb zookeeper demo install chaos bench fuzz clean

build: hacron

hacron: $(wildcard *.go) go.mod go.sum
	$(GO) build -ldflags '$(LDFLAGS)' -o hacron .

# The tests start their own ZooKeeper servers from Debian's package.
zookeeper:
	@if [ ! -f $(ZK_JAR) ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian's zookeeper package"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y zookeeper || \
			{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y zookeeper; }; \
		else \
			echo "Debian's zookeeper package is missing; run: sudo apt-get install -y zookeeper" >&2; \
			exit 1; \
		fi; \
	fi

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

FUZZTARGETS := .:FuzzConfigParse .:FuzzSocketDecode .:FuzzRunRecord ./internal/crontab:FuzzParse

# deb comes first: the package test installs what it built (HACRON_DEBS).
# -p 1: one package's tests at a time; the packages that start ZooKeeper
# servers would otherwise starve each other's JVMs on two cores.
test: zookeeper vet lint deb
	HACRON_DEBS=$(DEBDIR) $(GO) test -race -count=1 -p 1 -timeout 14m ./...
	$(MAKE) test-alone
	$(MAKE) fuzz FUZZTIME=20000x
	$(MAKE) demo

# Every test that needs no ZooKeeper (-short skips the others), in seconds.
unit:
	$(GO) test -short -count=1 ./...

# golangci-lint v2 (.golangci.yml), built from its own module file so that
# its many dependencies never move hacron's.
lint:
	$(GO) tool -modfile=tools/golangci-lint.mod golangci-lint run ./...

# The man pages (dist/man) and shell completions (dist/completion), from
# the command line model; the same tests fail when they are out of date.
man:
	$(GO) test -count=1 -run '^(TestManPage|TestCompletion)$$' . -args -update

# make deb [DEBDIR=dist/deb]: hacron_<version>_<arch>.deb and
# hacron-rcron_<version>_all.deb, built by nfpm (a tool dependency in
# go.mod: nothing to install but the module cache). The binary is built as
# make build does (sharing its build cache), without the symbol table and
# DWARF, as Debian ships binaries.
DEBDIR     ?= dist/deb
GOARCH     := $(shell $(GO) env GOARCH)
MAINTAINER ?= $(shell git log -1 --format='%an <%ae>' 2>/dev/null)
deb:
	rm -rf $(DEBDIR)/stage $(DEBDIR)/*.deb
	mkdir -p $(DEBDIR)/stage
	$(GO) build -ldflags '$(LDFLAGS) -s -w' -o $(DEBDIR)/stage/hacron .
	sed 's|/usr/local/bin/hacron|/usr/bin/hacron|' dist/hacron-agent.service > $(DEBDIR)/stage/hacron-agent.service
	gzip -9n < dist/man/hacron.1 > $(DEBDIR)/stage/hacron.1.gz
	gzip -9n < dist/man/hacron.conf.5 > $(DEBDIR)/stage/hacron.conf.5.gz
	for p in hacron hacron-rcron; do \
		VERSION='$(VERSION)' GOARCH='$(GOARCH)' STAGE='$(DEBDIR)/stage' MAINTAINER='$(MAINTAINER)' \
			$(GO) tool nfpm package -f dist/nfpm/$$p.yaml -p deb -t $(DEBDIR)/ || exit 1; \
	done

# Each security test alone, in a go test of its own with a ZooKeeper no
# other test has touched: none may rely on nodes another test made first
# (who creates /hacron decides its ACL). ALONE=<files> picks other tests.
ALONE ?= security_test.go acl_test.go tls_test.go
test-alone: zookeeper
	for t in $$(sed -n 's/^func \(TestIntegration_[A-Za-z0-9_]*\)(.*/\1/p' $(ALONE)); do \
		$(GO) test -race -count=1 -timeout 5m -run "^$$t$$" . || exit 1; \
	done

# Each fuzz target with its corpus (testdata/fuzz/); longer: FUZZTIME=10m.
# make test counts executions rather than time: a deadline that falls on a
# busy worker fails a time-bounded run with "context deadline exceeded".
FUZZTIME ?= 2m
fuzz:
	for t in $(FUZZTARGETS); do $(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}" || exit 1; done

# The fault-injection suite: CHAOS=10m by default, SEED=n replays a run,
# CHAOSFLAGS passes more (-hacron.daemon=false: without the daemonizing job).
CHAOS      ?= 10m
SEED       ?= 0
CHAOSFLAGS ?=
chaos: zookeeper
	$(GO) test -count=1 -run 'TestIntegration_Chaos$$' -v -timeout 0 . -args -hacron.chaos=$(CHAOS) -hacron.seed=$(SEED) -hacron.zkrestarts $(CHAOSFLAGS)

# The figures users compare with: a markdown table and the machine.
# BENCHREF=path/to/an/older/hacron measures it beside this build.
bench: zookeeper
	$(GO) test -count=1 -run 'TestBenchReport$$' -v -timeout 0 . -args -hacron.bench $(if $(BENCHREF),-hacron.benchref=$(BENCHREF))

# The README's first command: two agents on a local ZooKeeper, a failover.
demo: zookeeper build
	./dist/demo.sh

# make install [DESTDIR=...] [PREFIX=/usr/local] [RCRON=1] [FORCE=1]: the
# binary, the unit's stop helper, the systemd unit and the example config.
# An existing unit or config is left as it is (an admin may have edited
# it); FORCE=1 replaces both. RCRON=1 adds an rcron symlink for existing
# crontabs.
PREFIX ?= /usr/local
UNIT   := $(DESTDIR)/etc/systemd/system/hacron-agent.service
CONF   := $(DESTDIR)/etc/hacron/hacron.conf
install: build
	install -D -m 0755 hacron $(DESTDIR)$(PREFIX)/bin/hacron
	install -D -m 0755 dist/hacron-state-passive $(DESTDIR)$(PREFIX)/lib/hacron/state-passive
	@if [ -e $(UNIT) ] && [ -z "$(FORCE)" ]; then \
		echo "kept $(UNIT) (FORCE=1 replaces it)"; \
	else \
		install -d $(dir $(UNIT)) && \
		sed 's|/usr/local/|$(PREFIX)/|g' dist/hacron-agent.service >$(UNIT).tmp && \
		chmod 0644 $(UNIT).tmp && mv -f $(UNIT).tmp $(UNIT) && \
		echo "installed $(UNIT) (then: systemctl daemon-reload)"; \
	fi
	@if [ -e $(CONF) ] && [ -z "$(FORCE)" ]; then \
		echo "kept $(CONF) (FORCE=1 replaces it)"; \
	else \
		install -D -m 0644 dist/hacron.conf $(CONF) && echo "installed $(CONF): edit it before starting the agent"; \
	fi
	if [ -n "$(RCRON)" ]; then ln -sf hacron $(DESTDIR)$(PREFIX)/bin/rcron; fi

clean:
	rm -rf hacron dist/deb
