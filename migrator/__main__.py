from migrator.cli import main_exit

main_exit()
