# Shouhu — the two commands: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
CARGO ?= cargo
# PostgreSQL for the second engine of the storage and API suites (CI and this machine run one).
SHOUHU_TEST_PG_URL ?= postgres://postgres@127.0.0.1:5432/test
export SHOUHU_TEST_PG_URL

.PHONY: run test deps web build build-debug lint test-rust test-web fuzz fuzz-short bench doc clean

## make run: install, build the web UI and the release binary, run `shouhu demo`.
run: deps web
	$(CARGO) build --release -p shouhu-api --bin shouhu
	./target/release/shouhu demo

## make test: install, then lint and every test (Rust on SQLite and PostgreSQL, browser tests).
test: deps web lint test-rust test-web fuzz-short

deps:
	./scripts/install-deps.sh

web: deps
	cd web && npm run build

build-debug:
	$(CARGO) build -p shouhu-api --bin shouhu

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet

test-rust: build-debug
	$(CARGO) test --workspace

test-web: build-debug web
	./tests/web/run-e2e.sh

## Fuzzing: a few seconds per target in `make test`, long runs in `make fuzz`.
fuzz-short:
	./scripts/fuzz.sh 10

fuzz:
	./scripts/fuzz.sh 600

## The benchmarks (docs/benchmarks.md): foundation on SQLite then PostgreSQL; live positions; GB/T 28181 signalling
## (with the Mosquitto comparison) on SQLite, then its full load on PostgreSQL; live video (with the Janus comparison).
bench: deps
	./scripts/install-deps.sh --bench
	$(CARGO) build --release -p shouhu-api --bin shouhu
	./target/release/shouhu bench --engine sqlite
	./target/release/shouhu bench --engine postgres --database-url $(SHOUHU_TEST_PG_URL)
	./target/release/shouhu bench positions
	./target/release/shouhu bench positions --skip-compare --database-url $(SHOUHU_TEST_PG_URL)
	./target/release/shouhu bench sip
	SHOUHU_LOG=off ./target/release/shouhu bench live
	SHOUHU_LOG=warn ./target/release/shouhu bench enforcement --engine sqlite
	SHOUHU_LOG=warn ./target/release/shouhu bench enforcement --engine postgres --database-url $(SHOUHU_TEST_PG_URL)

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

clean:
	$(CARGO) clean
	rm -rf web/dist web/node_modules tests/web/node_modules tests/web/artifacts
