/* tools/weft/cmds.c - placeholder, being written. */
typedef int weft__placeholder_tools_weft_cmds_c;
