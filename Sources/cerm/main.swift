import ArgumentParser
import Shared

CermLogging.bootstrap()
Cerm.main()
