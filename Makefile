# fieldlm — build, test, fuzz, demo.
#   make            library + CLI (build/fieldlm) + test runner
#   make test       whole suite; last line "N passed, N failed"
#   make test-san   the same suite built with ASan + UBSan (build-san/)
#   make fuzz       libFuzzer targets (clang), each run for FUZZ_SECONDS
#   make demo       convert the bundled kcc-advisor model and ask it a farmer question
#   make test-neon  the kernel tests for ARM64 NEON, under qemu-aarch64
#   make examples   programs in examples/ that use only include/fieldlm.h
#   make install    CLI, libfieldlm.a, libfieldlm.so, fieldlm.h, fieldlm.pc under PREFIX
#   make test-install  install into a temporary prefix, check exports, build an example via pkg-config
#   make check-layers  the layer rules of docs/DESIGN.md (src/LAYERS): no upward include, no cycle
#   make ablate-report the LiteRT-LM ablation of docs/FIDELITY.md (200 KCC questions, base + LoRA; slow)
CC      ?= gcc
BUILD   ?= build
OPT     ?= -O2
WERROR  ?=
SAN     ?=
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -g $(OPT) -pthread -Iinclude -Isrc \
  -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wpointer-arith \
  -Wformat=2 -Wno-format-nonliteral -fvisibility=hidden -MMD -MP $(WERROR)
ifeq ($(FUZZ),1)
  BUILD := build-fuzz
  CFLAGS_BASE += -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
endif
ifeq ($(SAN),1)
  BUILD := build-san
  OPT := -O1
  CFLAGS_BASE += -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
endif
DEP_CFLAGS := $(shell pkg-config --cflags libutf8proc libpcre2-8 zlib 2>/dev/null)
DEP_LIBS   := $(shell pkg-config --libs libutf8proc libpcre2-8 zlib 2>/dev/null || echo -lutf8proc -lpcre2-8 -lz)
CFLAGS  += $(CFLAGS_BASE) $(DEP_CFLAGS)
LDLIBS  += $(DEP_LIBS) -lm -pthread
# `fieldlm serve` (app/serve/) only: libmicrohttpd and json-c, linked into the CLI, never into the library
SERVE_LIBS := $(shell pkg-config --libs libmicrohttpd json-c 2>/dev/null || echo -lmicrohttpd -ljson-c)
ifeq ($(SAN),1)
  LDFLAGS += -fsanitize=address,undefined
endif

# Per-ISA kernel files get their own flags; they are only called after a cpuid check.
ARCH := $(shell $(CC) -dumpmachine | cut -d- -f1)
# One folder per layer (docs/DESIGN.md, src/LAYERS); src/dev (verify, the bandwidth
# probe) is a separate library for the CLI and the tests, not part of libfieldlm.
LIB_SRC  := $(sort $(filter-out src/dev/%,$(wildcard src/*/*.c)))
DEV_SRC  := $(sort $(wildcard src/dev/*.c))
ifneq ($(ARCH),x86_64)
  LIB_SRC := $(filter-out src/kernels/kernels_avx2.c src/kernels/kernels_avx512.c,$(LIB_SRC))
endif
ifneq ($(ARCH),aarch64)
  LIB_SRC := $(filter-out src/kernels/kernels_neon.c,$(LIB_SRC))
endif
APP_SRC  := $(sort $(wildcard app/*.c app/serve/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
DEV_OBJ  := $(DEV_SRC:%.c=$(BUILD)/%.o)
APP_OBJ  := $(APP_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/serve_page.o
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)

$(BUILD)/src/kernels/kernels_avx2.o: EXTRA_CFLAGS = -mavx2 -mfma -mf16c
$(BUILD)/src/runtime/litert_int8.o: EXTRA_CFLAGS = -O3
$(BUILD)/src/kernels/kernels_avx512.o: EXTRA_CFLAGS = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c -mavx2

.PHONY: all deps test test-san test-neon fuzz demo clean
all: deps $(BUILD)/fieldlm $(BUILD)/fieldlm_tests

deps:
	@sh tools/check-deps.sh

# Header dependencies come from the compiler (-MMD -MP: one .d file per object).
$(BUILD)/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(EXTRA_CFLAGS) -c $< -o $@

# The shared library is built from position-independent copies of the objects
# (the static library, CLI and tests keep the non-PIC ones). Only the functions
# fieldlm.h marks FLM_API are exported (-fvisibility=hidden everywhere else).
$(BUILD)/pic/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(EXTRA_CFLAGS) -fPIC -c $< -o $@
$(BUILD)/pic/src/kernels/kernels_avx2.o: EXTRA_CFLAGS = -mavx2 -mfma -mf16c
$(BUILD)/pic/src/runtime/litert_int8.o: EXTRA_CFLAGS = -O3
$(BUILD)/pic/src/kernels/kernels_avx512.o: EXTRA_CFLAGS = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c -mavx2


$(BUILD)/libfieldlm.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

SO_MAJOR   := 0
SO_VERSION := 0.1.0
PIC_OBJ := $(LIB_SRC:%.c=$(BUILD)/pic/%.o)
$(BUILD)/libfieldlm.so.$(SO_VERSION): $(PIC_OBJ)
	$(CC) -shared $(LDFLAGS) -Wl,-soname,libfieldlm.so.$(SO_MAJOR) -o $@ $^ $(LDLIBS)
$(BUILD)/libfieldlm.so: $(BUILD)/libfieldlm.so.$(SO_VERSION)
	ln -sf libfieldlm.so.$(SO_VERSION) $(BUILD)/libfieldlm.so.$(SO_MAJOR)
	ln -sf libfieldlm.so.$(SO_VERSION) $@

$(BUILD)/libfieldlm_dev.a: $(DEV_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/fieldlm: $(APP_OBJ) $(BUILD)/libfieldlm_dev.a $(BUILD)/libfieldlm.a
	$(CC) $(LDFLAGS) -o $@ $(APP_OBJ) $(BUILD)/libfieldlm_dev.a $(BUILD)/libfieldlm.a $(LDLIBS) $(SERVE_LIBS)

# The server's chat page, embedded into the binary (tools/embed.sh: the file's bytes as a C array).
$(BUILD)/gen/serve_page.c: app/serve/chat.html tools/embed.sh
	@mkdir -p $(dir $@)
	sh tools/embed.sh app/serve/chat.html serve_page_html $@
$(BUILD)/gen/serve_page.o: $(BUILD)/gen/serve_page.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/fieldlm_tests: $(TEST_OBJ) $(BUILD)/libfieldlm_dev.a $(BUILD)/libfieldlm.a
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libfieldlm_dev.a $(BUILD)/libfieldlm.a $(LDLIBS)

# The suite runs from the repository root; FLM_BIN tells CLI tests which binary to run.
test: all
	FLM_BIN=$(BUILD)/fieldlm $(BUILD)/fieldlm_tests $(TESTS)

test-san:
	$(MAKE) SAN=1 test

FUZZ_SECONDS ?= 20
FUZZ_TARGETS := $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
# The library is built by clang with coverage instrumentation (FUZZ=1 below), then
# each target links it with libFuzzer's main and runs on its seed corpus. Undefined
# behaviour aborts (-fno-sanitize-recover), so it fails the run like a crash.
fuzz:
	$(MAKE) CC=clang FUZZ=1 build-fuzz/libfieldlm.a build-fuzz/libfieldlm_dev.a
	@set -e; for t in $(FUZZ_TARGETS); do \
	  extra=""; case $$t in fuzz_serve_request) extra="app/serve/request.c $(SERVE_LIBS)" ;; esac; \
	  clang $(CFLAGS_BASE) $(DEP_CFLAGS) -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o build-fuzz/$$t fuzz/$$t.c \
	    $$extra build-fuzz/libfieldlm_dev.a build-fuzz/libfieldlm.a $(DEP_LIBS) -lm -pthread; \
	  mkdir -p build-fuzz/corpus-$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  build-fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 build-fuzz/corpus-$$t fuzz/seeds/$$t \
	    > build-fuzz/$$t.log 2>&1 || { tail -n 40 build-fuzz/$$t.log; echo "fuzz: $$t FAILED"; exit 1; }; \
	  grep -E "^(#[0-9]+ *DONE|Done)" build-fuzz/$$t.log | tail -n 1; \
	done

# Programs in examples/ that use only include/fieldlm.h (no -Isrc), linked with the library.
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
.PHONY: examples
examples: $(EXAMPLES)
$(BUILD)/examples/%: examples/%.c include/fieldlm.h $(BUILD)/libfieldlm.a
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Isrc,$(CFLAGS)) $(LDFLAGS) -o $@ $< $(BUILD)/libfieldlm.a $(LDLIBS)

# The main job on the bundled model: convert it (HF folder, bf16) to a q8_0 package,
# then ask it a real Kisan Call Centre question (data/agri-kcc), streaming the answer
# with the model's own generation defaults (fixed seed, so the demo repeats).
DEMO_SYSTEM   := You are an agricultural advisor for smallholder farmers. Answer briefly and practically.
DEMO_QUESTION := Stem borer in paddy (crop: Paddy (Dhan))
demo: all
	$(BUILD)/fieldlm convert models/kcc-advisor -o models/kcc-advisor-q8_0.gguf --type q8_0
	@echo
	@echo "farmer: $(DEMO_QUESTION)"
	@echo "advisor:"
	@$(BUILD)/fieldlm run -m models/kcc-advisor-q8_0.gguf --seed 42 --system "$(DEMO_SYSTEM)" -p "$(DEMO_QUESTION)"

# ARM64 NEON kernels: cross-compiled and run under qemu-aarch64 (installs the
# cross toolchain and qemu-user when missing and running as root).
test-neon:
	sh tools/neon-test.sh

# Installation: make install PREFIX=/usr/local (DESTDIR honoured); make uninstall.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCDIR ?= $(PREFIX)/include
PCDIR  ?= $(LIBDIR)/pkgconfig
.PHONY: install uninstall test-install shared
shared: $(BUILD)/libfieldlm.so
install: all $(BUILD)/libfieldlm.so
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PCDIR)
	install -m 755 $(BUILD)/fieldlm $(DESTDIR)$(BINDIR)/fieldlm
	install -m 644 $(BUILD)/libfieldlm.a $(DESTDIR)$(LIBDIR)/libfieldlm.a
	install -m 755 $(BUILD)/libfieldlm.so.$(SO_VERSION) $(DESTDIR)$(LIBDIR)/libfieldlm.so.$(SO_VERSION)
	ln -sf libfieldlm.so.$(SO_VERSION) $(DESTDIR)$(LIBDIR)/libfieldlm.so.$(SO_MAJOR)
	ln -sf libfieldlm.so.$(SO_VERSION) $(DESTDIR)$(LIBDIR)/libfieldlm.so
	install -m 644 include/fieldlm.h $(DESTDIR)$(INCDIR)/fieldlm.h
	@printf '%s\n' 'prefix=$(PREFIX)' 'includedir=$(INCDIR)' 'libdir=$(LIBDIR)' '' \
	  'Name: fieldlm' 'Description: Qwen2 / Qwen2.5 inference on the CPU, verified against transformers' \
	  'Version: $(SO_VERSION)' 'Requires.private: libutf8proc libpcre2-8 zlib' \
	  'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lfieldlm' 'Libs.private: -lm -pthread' \
	  > $(DESTDIR)$(PCDIR)/fieldlm.pc
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/fieldlm $(DESTDIR)$(LIBDIR)/libfieldlm.a \
	  $(DESTDIR)$(LIBDIR)/libfieldlm.so $(DESTDIR)$(LIBDIR)/libfieldlm.so.$(SO_MAJOR) \
	  $(DESTDIR)$(LIBDIR)/libfieldlm.so.$(SO_VERSION) $(DESTDIR)$(INCDIR)/fieldlm.h $(DESTDIR)$(PCDIR)/fieldlm.pc
# Installs into a temporary prefix and checks it as a user would (tools/install-test.sh).
test-install: all $(BUILD)/libfieldlm.so
	sh tools/install-test.sh

# The layer rules of docs/DESIGN.md (src/LAYERS): no upward include, no include or call
# cycle between the library's files, user-facing commands on fieldlm.h only.
.PHONY: check-layers
check-layers: $(LIB_OBJ) $(DEV_OBJ)
	sh tools/check-layers.sh $(BUILD)

clean:
	rm -rf build build-san build-fuzz

-include $(LIB_OBJ:.o=.d) $(DEV_OBJ:.o=.d) $(APP_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(PIC_OBJ:.o=.d)

# The published ablation (docs/FIDELITY.md, "Which suspect causes which symptom"): every
# LiteRT-LM behaviour on the first 200 KCC questions, for kcc-advisor and with its LoRA.
# Reports (JSON, answers, a markdown table) go to build/ablate/.
ABLATE_N ?= 200
ABLATE_ARGS ?= -n $(ABLATE_N) -t 2
ablate-report: $(BUILD)/fieldlm
	@mkdir -p $(BUILD)/ablate
	$(BUILD)/fieldlm ablate -m models/kcc-advisor --questions data/ablate/kcc-questions.jsonl $(ABLATE_ARGS) --json \
	  -o $(BUILD)/ablate/kcc-advisor.json --answers $(BUILD)/ablate/kcc-advisor.answers.jsonl
	$(BUILD)/fieldlm ablate -m models/kcc-advisor --lora tests/data/kcc-advisor-lora --questions data/ablate/kcc-questions.jsonl \
	  $(ABLATE_ARGS) --json -o $(BUILD)/ablate/kcc-advisor-lora.json --answers $(BUILD)/ablate/kcc-advisor-lora.answers.jsonl
	python3 tools/ablate-table.py $(BUILD)/ablate/kcc-advisor.json $(BUILD)/ablate/kcc-advisor-lora.json | tee $(BUILD)/ablate/table.md
.PHONY: ablate-report
