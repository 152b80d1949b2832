# cdp: PGXS build.  `make`, `make install`, `make installcheck` work as
# packagers expect; scripts/test and scripts/demo wrap them with a throwaway
# server.

EXTENSION = cdp
EXTVERSION = 0.1.0

MODULE_big = cdp
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# The extension script is split per concern under ext/ and concatenated here,
# in file-name order.
DATA_built = cdp--$(EXTVERSION).sql
EXT_PARTS = $(sort $(wildcard ext/*.sql))

PG_CPPFLAGS += -I$(srcdir)/src
SHLIB_LINK += -lroaring -lnlopt -lm

# pg_regress: "setup" first, then every other sql/*.sql in name order.
REGRESS_ALL = $(sort $(notdir $(basename $(wildcard sql/*.sql))))
REGRESS = setup $(filter-out setup,$(REGRESS_ALL))
REGRESS_OPTS = --inputdir=.

EXTRA_CLEAN = cdp--$(EXTVERSION).sql results regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# A header change rebuilds every object (PGXS tracks no header dependencies
# unless the server was configured with --enable-depend).
$(OBJS): $(wildcard src/*.h)

cdp--$(EXTVERSION).sql: $(EXT_PARTS)
	cat $(EXT_PARTS) > $@

.PHONY: test demo bench
test:
	scripts/test
demo:
	scripts/demo
bench:
	bench/run
