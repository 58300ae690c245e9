/* tools/weft/json.c - placeholder, being written. */
typedef int weft__placeholder_tools_weft_json_c;
