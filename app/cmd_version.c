/* cmd_version.c — `fieldlm version`. */
#include <stdio.h>
#include "cli.h"
#include "fieldlm.h"

int cmd_version(int argc, char **argv) {
    (void)argc; (void)argv;
    printf("fieldlm %s\n", FLM_VERSION);
    return 0;
}
