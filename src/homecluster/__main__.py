from homecluster.cli.main import run

run()
