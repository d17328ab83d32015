# fdh_unit_test(NAME) per tests/unit/test_NAME.c
fdh_unit_test(conn)
fdh_unit_test(client)
fdh_unit_test(xfd)
fdh_unit_test(limits)
fdh_unit_test(route)
fdh_unit_test(resp)
fdh_unit_test(fdpass)
fdh_unit_test(http)
