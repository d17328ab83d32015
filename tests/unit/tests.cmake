# fdh_unit_test(NAME) per tests/unit/test_NAME.c
